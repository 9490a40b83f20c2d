//! Runs VM scenarios `jobs` at a time, each on its own thread with its own qemu, writes each
//! console log to the cache's `logs/`, and reports each as it ends (the console's last lines when
//! it fails).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use crate::scenario;

/// Runs every scenario; returns, in the order they ended, whether each passed.
pub fn run_all(
    scenarios: &[scenario::Scenario],
    env: &scenario::Env,
    jobs: usize,
    verbose: bool,
) -> Vec<bool> {
    let logs = env.logs.clone();
    let queue = Mutex::new(scenarios.iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(s) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let outcome = scenario::run(s, env, verbose);
                    let log = logs.join(format!("{}.log", s.name));
                    let _ = std::fs::write(&log, outcome.transcript.join("\n") + "\n");
                    report(s, &outcome, &log);
                    if let Ok(mut r) = results.lock() {
                        r.push(outcome.failure.is_none());
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

fn report(s: &scenario::Scenario, outcome: &scenario::Outcome, log: &Path) {
    let secs = outcome.elapsed.as_secs_f64();
    match &outcome.failure {
        None => println!("xtask: PASS {} ({secs:.1}s)", s.name),
        Some(why) => {
            let tail: Vec<&String> = outcome.transcript.iter().rev().take(60).collect();
            let mut text = format!(
                "xtask: FAIL {} ({secs:.1}s): {why}\n  {}\n  console (last {} lines; all in {}):\n",
                s.name,
                s.description,
                tail.len(),
                log.display()
            );
            for line in tail.into_iter().rev() {
                text.push_str("    | ");
                text.push_str(line);
                text.push('\n');
            }
            print!("{text}");
        }
    }
}
