//! netinit as a command-line tool, when it is not PID 1: `netinit explain '<cmdline>'` shows the
//! boot plan a kernel command line gives, so an operator can check an iPXE script before booting a
//! fleet with it. It only parses and prints; it touches nothing on the machine.

use std::fmt::Write as _;

use crate::cmdline::{self, Countdown, IpMode};

const USAGE: &str = "usage: netinit explain '<kernel command line>'
       netinit --version

As PID 1 (the /init of an initramfs), netinit boots the machine.";

/// Returns the exit status: 0 when the cmdline would boot, 1 when it would not, 2 on bad usage.
pub fn main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("explain") if args.len() == 2 => {
            let parsed = cmdline::parse(&args[1]);
            print!("{}", explain(&parsed));
            i32::from(!parsed.errors.is_empty())
        }
        Some("--version") => {
            println!("netinit {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help") | Some("-h") | Some("help") => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

/// The boot plan, then warnings and errors.
pub fn explain(p: &cmdline::Parsed) -> String {
    let c = &p.config;
    let mut s = String::new();
    let nic = match (&c.net.bootif, &c.net.device) {
        (Some(mac), _) => format!("the NIC with MAC {mac} (BOOTIF)"),
        (None, Some(dev)) => format!("{dev} (ip=)"),
        (None, None) => "the first NIC with a link, in name order".into(),
    };
    let _ = writeln!(s, "network:  {nic}");
    match &c.net.mode {
        IpMode::Dhcp => {
            let _ = writeln!(s, "          DHCP, giving up after {}s", c.net.dhcp_timeout.as_secs());
        }
        IpMode::Static(st) => {
            let _ = writeln!(s, "          static {}/{}", st.address, st.prefix);
            if let Some(gw) = st.gateway {
                let _ = writeln!(s, "          gateway {gw}");
            }
            if !st.dns.is_empty() {
                let dns: Vec<String> = st.dns.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(s, "          dns {}", dns.join(" "));
            }
        }
        IpMode::Off => {
            let _ = writeln!(s, "          off");
        }
    }
    if let Some(h) = &c.net.hostname {
        let _ = writeln!(s, "          hostname {h}");
    }
    for (i, url) in c.modloop.iter().enumerate() {
        let label = if i == 0 { "image:" } else { "" };
        let _ = writeln!(s, "{label:10}{url}");
    }
    let _ = writeln!(
        s,
        "modules:  those packed in the initramfs{}",
        if c.modules.is_empty() { String::new() } else { format!(", and {}", c.modules.join(", ")) }
    );
    let _ = writeln!(
        s,
        "init:     {}{}",
        c.init,
        if c.init_args.is_empty() { String::new() } else { format!(" {}", c.init_args.join(" ")) }
    );
    let on_failure = match &c.countdown {
        Countdown::After(d) => format!("reboot after {}s", d.as_secs()),
        Countdown::Immediately => "reboot at once".into(),
        Countdown::Never => "wait forever (panic=0)".into(),
    };
    let _ = writeln!(s, "failure:  {on_failure}");
    for w in &p.warnings {
        let _ = writeln!(s, "warning:  {w}");
    }
    for e in &p.errors {
        let _ = writeln!(s, "error:    {e}");
    }
    let _ = writeln!(
        s,
        "{}",
        if p.errors.is_empty() { "this cmdline would boot" } else { "this cmdline would NOT boot" }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan() {
        let p = cmdline::parse("modloop=http://u:p@images.lan/alpine.squashfs,http://backup/alpine.squashfs ip=dhcp BOOTIF=01-52-54-00-12-34-56 panic=30");
        assert_eq!(
            explain(&p),
            "network:  the NIC with MAC 52:54:00:12:34:56 (BOOTIF)
          DHCP, giving up after 90s
image:    http://***@images.lan/alpine.squashfs
          http://backup/alpine.squashfs
modules:  those packed in the initramfs
init:     /sbin/init
failure:  reboot after 30s
this cmdline would boot
"
        );
    }

    #[test]
    fn a_bad_cmdline() {
        let p = cmdline::parse("ip=10.0.0.300::::::off");
        let out = explain(&p);
        assert!(
            out.contains("error:    ip: \"10.0.0.300::::::off\": bad client address \"10.0.0.300\""),
            "{out}"
        );
        assert!(out.contains("error:    modloop: missing"), "{out}");
        assert!(out.ends_with("this cmdline would NOT boot\n"), "{out}");
        assert_eq!(main(vec!["explain".into(), "ip=dhcp".into()]), 1);
        assert_eq!(main(vec!["explain".into(), "modloop=http://a/b".into()]), 0);
        assert_eq!(main(vec!["frobnicate".into()]), 2);
    }
}
