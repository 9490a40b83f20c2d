//! netinit: PID 1 of an initramfs that network-boots Linux into a squashfs root held in RAM.
//! Run as PID 1 it boots (`boot`); run as any other process it is a tool for operators (`cli`).
//!
//! This file only dispatches; it holds no logic of its own.

mod boot;
mod cli;
mod clock;
mod cmdline;
mod customize;
mod failure;
mod fetch;
#[cfg(test)]
mod fuzz;
mod json;
mod klog;
mod modloop_service;
mod modules;
mod net;
mod netconsole;
mod plan;
mod report;
mod rootfs;
mod stream;
mod switch_root;
mod sys;

fn main() {
    if rustix::process::getpid().is_init() {
        boot::pid1()
    }
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}
