//! The report documents pinned against `report-schema.md`, the boot id, the redaction, the budget.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::cmdline::{FailAction, Mac};
use crate::net::{dhcp::Route, Nic, V4};

const SCHEMA: &str = include_str!("../../../report-schema.md");

/// The schema's fields of each document (`## \`name\``), with their types, the common ones included.
fn schema() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut docs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = None;
    for line in SCHEMA.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading.split('`').nth(1).map(str::to_owned).or(Some("common".into()));
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(doc), [_, field, kind, ..]) = (&current, &cells[..]) {
            if let Some(field) = field.strip_prefix('`').and_then(|f| f.strip_suffix('`')) {
                docs.entry(doc.clone()).or_default().insert(field.to_owned(), (*kind).to_owned());
            }
        }
    }
    let common = docs.remove("common").unwrap_or_default();
    for fields in docs.values_mut() {
        fields.extend(common.clone());
    }
    docs
}

/// Every field of a document as `a.b` paths, with the type its value has; `map`s not entered.
fn fields(json: &Json, schema: &BTreeMap<String, String>) -> BTreeMap<String, &'static str> {
    fn walk(
        json: &Json,
        prefix: &str,
        schema: &BTreeMap<String, String>,
        out: &mut BTreeMap<String, &'static str>,
    ) {
        let Json::Obj(fields) = json else { return };
        for (k, v) in fields {
            let path = if prefix.is_empty() { (*k).to_owned() } else { format!("{prefix}.{k}") };
            let kind = match v {
                Json::Null => "null",
                Json::Bool(_) => "bool",
                Json::Num(_) => "number",
                Json::Str(_) => "string",
                Json::Arr(_) => "array",
                Json::Obj(_) if schema.get(&path).is_some_and(|t| t == "map") => "map",
                Json::Obj(_) => "object",
            };
            out.insert(path.clone(), kind);
            if kind == "object" {
                walk(v, &path, schema, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(json, "", schema, &mut out);
    out
}

/// A document has exactly the schema's fields, each of a type the schema allows.
fn check(name: &str, json: &Json) {
    let docs = schema();
    let schema = docs.get(name).unwrap_or_else(|| panic!("report-schema.md has no section `{name}`"));
    let got = fields(json, schema);
    let got_names: Vec<&String> = got.keys().collect();
    // A null object hides its fields: those are checked in the documents where it is present.
    let expected: Vec<&String> = schema
        .keys()
        .filter(|k| {
            let parent = k.rsplit_once('.').map(|(p, _)| p.to_owned());
            parent.is_none_or(|p| got.get(&p) != Some(&"null"))
        })
        .collect();
    assert_eq!(got_names, expected, "{name}: the document's fields against report-schema.md");
    for (path, kind) in &got {
        let allowed = &schema[path];
        let ok = allowed.split(" or ").any(|a| a == *kind);
        assert!(ok, "{name}: {path} is {kind}, report-schema.md says {allowed}");
    }
}

fn lease() -> Configured {
    Configured {
        nic: Nic { name: "eth0".into(), index: 2, mac: Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]) },
        v4: Some(V4 {
            address: [10, 0, 2, 15].into(),
            prefix: 24,
            routes: vec![Route {
                destination: [0, 0, 0, 0].into(),
                prefix: 0,
                gateway: [10, 0, 2, 2].into(),
            }],
            dhcp: Some(([10, 0, 2, 2].into(), Some(Duration::from_secs(86400)))),
        }),
        v6: None,
        dns: vec![[10, 0, 2, 3].into()],
        domain: None,
        search: Vec::new(),
        hostname: Some("n5".into()),
        mtu: None,
        ntp: Vec::new(),
        lease: None,
    }
}

fn fetched() -> Fetched {
    Fetched {
        path: "/run/netinit/image/root.squashfs".into(),
        url: Url::parse("http://u:secret@10.0.2.2:8080/root.squashfs").unwrap(),
        size: 4 << 20,
        elapsed: Duration::from_millis(500),
        attempts: 1,
        sha256: Some("ab".repeat(32)),
    }
}

fn identity() -> Identity {
    let mut id = Identity::new([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    id.machine.mac = "52:54:00:12:34:56".into();
    id
}

fn text(json: &Json) -> String {
    let mut s = String::new();
    json.write(&mut s);
    s
}

#[test]
fn every_document_matches_the_schema() {
    let id = identity();
    let up = Duration::from_millis(4321);
    let stages = [(Stage::Mounts, Duration::from_millis(12)), (Stage::Network, Duration::from_millis(900))];
    let policy =
        FailurePolicy { action: FailAction::Reboot, countdown: Countdown::After(Duration::from_secs(5)) };
    let (c, image) = (lease(), fetched());
    let log = vec!["[    1.000000] error: boot failed".to_owned()];
    let root = Path::new("/newroot");
    let all = [
        Facts::Network { lease: &c, elapsed: Duration::from_millis(900) },
        Facts::Fetched(&image),
        Facts::Mounted { root, image: &image.url },
        Facts::Handoff { init: "/sbin/init (found)", total: up, stages: &stages },
        Facts::Failure {
            stage: "fetch",
            error: "GET x answered HTTP 404",
            hint: "h",
            log: &log,
            policy: &policy,
        },
    ];
    let events: Vec<Event> = all.iter().map(Facts::event).collect();
    assert_eq!(events, Event::ALL, "one sample per event");
    for facts in &all {
        check(facts.event().name(), &document(facts, &id, up));
    }
    let mut v6 = lease();
    v6.v4 = None;
    v6.v6 = Some(crate::net::V6 {
        addresses: vec![("fd00::5".parse().unwrap(), 64)],
        router: None,
        method: crate::net::Method6::Slaac,
    });
    check(
        "network",
        &document(&Facts::Network { lease: &v6, elapsed: Duration::ZERO }, &Identity::default(), up),
    );
    let record = Record {
        lease: Some(&c),
        image: &image,
        init: "/sbin/init",
        total: up,
        stages: &stages,
        cmdline: "modloop=http://u:p@h/r",
        report: None,
    };
    check("boot", &boot_record(&record, &id, up));
    check("boot", &boot_record(&Record { lease: None, ..record }, &id, up));
}

#[test]
fn documents_say_what_happened() {
    let id = identity();
    let image = fetched();
    let doc = text(&document(&Facts::Fetched(&image), &id, Duration::from_millis(1500)));
    assert_eq!(
        doc,
        format!(
            concat!(
                r#"{{"event":"fetched","boot_id":"{}","mac":"52:54:00:12:34:56","uuid":null,"serial":null,"version":"{}","uptime_ms":1500,"#,
                r#""image":{{"url":"http://***@10.0.2.2:8080/root.squashfs","size":4194304,"elapsed_ms":500,"rate":8388608,"sha256":"{}","attempts":1}}}}"#
            ),
            id.boot_id,
            env!("CARGO_PKG_VERSION"),
            "ab".repeat(32)
        )
    );
    let stages = [(Stage::Mounts, Duration::from_millis(12)), (Stage::Fetch, Duration::from_millis(2346))];
    let doc = text(&document(
        &Facts::Handoff { init: "/sbin/init", total: Duration::from_secs(5), stages: &stages },
        &id,
        Duration::from_secs(5),
    ));
    assert!(
        doc.ends_with(r#""init":"/sbin/init","total_ms":5000,"stages":{"mounts":12,"fetch":2346}}"#),
        "{doc}"
    );
    let c = lease();
    let doc = text(&document(
        &Facts::Network { lease: &c, elapsed: Duration::from_millis(900) },
        &id,
        Duration::ZERO,
    ));
    assert!(doc.contains(r#""nic":"eth0","lease":{"interface":"eth0","mac":"52:54:00:12:34:56","method":"dhcp","address":"10.0.2.15","prefix":24,"gateway":"10.0.2.2","server":"10.0.2.2","lease_time":86400,"dns":["10.0.2.3"]"#), "{doc}");
    let record = Record {
        lease: Some(&c),
        image: &image,
        init: "/sbin/init",
        total: Duration::ZERO,
        stages: &[],
        cmdline: "modloop=http://u:p@h/r proxy=http://me:pw@proxy:3128",
        report: None,
    };
    let doc = text(&boot_record(&record, &id, Duration::ZERO));
    assert!(doc.contains(r#""cmdline":"modloop=http://***@h/r proxy=http://***@proxy:3128""#), "{doc}");
    assert!(!doc.contains("secret") && !doc.contains("pw"), "{doc}");
}

#[test]
fn boot_ids_are_version_4_uuids() {
    let id = boot_id([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    assert_eq!(id, "01234567-89ab-4def-bedc-ba9876543210");
    let id = boot_id([u64::MAX, u64::MAX]);
    assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    assert_eq!(boot_id([0, 0]), "00000000-0000-4000-8000-000000000000");
    assert_ne!(Reporter::new().id.boot_id, Reporter::new().id.boot_id);
}

#[test]
fn redaction() {
    let check = |cmdline: &str, expected: &str| assert_eq!(redact_cmdline(cmdline), expected, "{cmdline}");
    check("modloop=http://h/r ip=dhcp", "modloop=http://h/r ip=dhcp");
    check("modloop=https://u:p@h/r", "modloop=https://***@h/r");
    check("modloop=http://a:b@h1/r,http://c@h2/r", "modloop=http://***@h1/r,http://***@h2/r");
    check("proxy=http://user:pa@ss@proxy:3128 x", "proxy=http://***@proxy:3128 x");
    check("netinit.report=http://t:k@c/api?mac={MAC}", "netinit.report=http://***@c/api?mac={MAC}");
    check("modloop=http://h/path@x", "modloop=http://h/path@x");
    check("ssh_key=\"ssh-ed25519 AAAA me@host\"", "ssh_key=\"ssh-ed25519 AAAA me@host\"");
    check("init_args=\"--url=http://u:p@h\"", "init_args=\"--url=http://***@h\"");
    check("://@", "://***@");
    check("", "");
}

#[test]
fn a_dead_server_costs_one_budget_and_one_line() {
    let url = Url::parse("http://10.0.2.2:9/r").unwrap();
    let mut b = Budget::default();
    assert_eq!(b.allow(Event::Network), Some(ORDINARY));
    assert_eq!(b.record(Event::Network, &url, &Ok(204)), None, "delivered: nothing said");
    assert_eq!(b.allow(Event::Fetched), Some(ORDINARY));
    let said = b.record(Event::Fetched, &url, &Err("connecting failed: connection failed".into()));
    assert_eq!(
        said.as_deref(),
        Some("report: POST http://10.0.2.2:9/r (fetched report): connecting failed: connection failed; skipping the other reports but the failure one")
    );
    assert_eq!(b.allow(Event::Mounted), None);
    assert_eq!(b.allow(Event::Handoff), None);
    assert_eq!(b.skipped, 2);
    assert_eq!(b.allow(Event::Failure), Some(FAILURE), "the failure report still tries");
    let said = b.record(Event::Failure, &url, &Err("timed out".into()));
    assert_eq!(
        said.as_deref(),
        Some("report: the failure report to http://10.0.2.2:9/r was not delivered: timed out")
    );
    let mut b = Budget::default();
    let said = b.record(Event::Network, &url, &Ok(500));
    assert!(said.unwrap().contains("answered HTTP 500"));
    assert!(b.dead);
    assert!(ORDINARY <= Duration::from_secs(1) && FAILURE <= Duration::from_secs(3));
}
