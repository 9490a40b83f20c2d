//! netinit as a command-line tool, when it is not PID 1: `netinit explain [--json] '<cmdline>'` shows
//! the boot plan a kernel command line gives, so an operator can check an iPXE script before booting a
//! fleet with it; `netinit fetch URL[,URL...] FILE` downloads an image exactly as the boot would
//! (mirrors, retries, resume, digest), to check a server, and to measure the fetcher.

use crate::cmdline;
use crate::fetch::hex;
use crate::plan::Plan;

const USAGE: &str = "usage: netinit explain [--json] '<kernel command line>'
       netinit fetch [--sha256 HEX] URL[,URL...] FILE
       netinit manifest [--chunk-size BYTES] IMAGE
       netinit --version

As PID 1 (the /init of an initramfs), netinit boots the machine.";

/// Returns the exit status: 0 when the cmdline would boot, 1 when it would not, 2 on bad usage.
pub fn main(args: Vec<String>) -> i32 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (json, cmdline) = match args.as_slice() {
        ["explain", cmdline] => (false, *cmdline),
        ["explain", "--json", cmdline] | ["explain", cmdline, "--json"] => (true, *cmdline),
        ["fetch", rest @ ..] => return fetch(rest),
        ["manifest", rest @ ..] => return crate::stream::manifest::cli(rest),
        // Started by PID 1 for modloop_stream=yes, with the NBD and control sockets on 0 and 1.
        ["stream-serve"] => return crate::stream::serve(),
        // Started by PID 1 after switch_root (`netinit.keep_lease=`), not by hand.
        ["keep-lease"] => return crate::net::keeper::run(),
        ["--version"] => {
            println!("netinit {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            return 0;
        }
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let parsed = cmdline::parse(cmdline);
    let plan = Plan::new(&parsed);
    if json {
        println!("{}", plan.json());
    } else {
        print!("{}", plan.text());
    }
    i32::from(!plan.boots())
}

/// `netinit fetch`: the boot's downloader on the command line. Exit status 0 when the file is whole
/// (and matches `--sha256`), 1 otherwise, 2 on bad usage.
fn fetch(args: &[&str]) -> i32 {
    let (sha, rest) = match args {
        ["--sha256", hex, rest @ ..] => (Some(*hex), rest),
        rest => (None, rest),
    };
    let [urls, file] = rest else {
        eprintln!("{USAGE}");
        return 2;
    };
    let mut words = format!("modloop={urls}");
    if let Some(hex) = sha {
        words.push_str(&format!(" modloop_sha256={hex}"));
    }
    let parsed = cmdline::parse(&words);
    if let Some(e) = parsed.errors.first() {
        eprintln!("netinit: {e}");
        return 2;
    }
    crate::klog::init(false);
    let image = &parsed.config.image;
    // The operator's tool always prints the digest.
    let job = crate::fetch::engine::Job { sha256: true, ..crate::fetch::engine::Job::for_image(image, None) };
    let start = std::time::Instant::now();
    match crate::fetch::engine::download_to(std::path::Path::new(file), &job, None) {
        Ok(done) => {
            let secs = start.elapsed().as_secs_f64();
            let rate = done.size as f64 / 1048576.0 / secs.max(0.001);
            let digest = done.sha256.map(|d| hex(&d)).unwrap_or_default();
            println!("{} bytes in {secs:.3}s ({rate:.1} MiB/s), sha256 {digest}", done.size);
            match image.sha256 {
                Some(expected) if Some(expected) != done.sha256 => {
                    eprintln!("netinit: the SHA-256 is {digest}, not {}", hex(&expected));
                    1
                }
                _ => 0,
            }
        }
        Err(e) => {
            eprintln!("netinit: {}", crate::failure::chain(&e));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(main(vec!["explain".into(), "ip=dhcp".into()]), 1);
        assert_eq!(main(vec!["explain".into(), "modloop=http://a/b".into()]), 0);
        assert_eq!(main(vec!["explain".into(), "--json".into(), "modloop=http://a/b".into()]), 0);
        assert_eq!(main(vec!["frobnicate".into()]), 2);
        assert_eq!(main(vec!["fetch".into(), "modloop-without-a-file".into()]), 2);
    }
}
