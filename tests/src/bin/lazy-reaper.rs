//! An init that reaps late, for tests/e2e/supervision.rs: `lazy-reaper PROGRAM [ARGS...]` runs
//! PROGRAM as its child and becomes the subreaper of everything below it, then waits for that
//! one child only. The orphans re-parented to it (an app whose daemon was killed) stay zombies
//! until it is killed itself, as under an init that reaps seconds late (or never).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: lazy-reaper PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "lazy-reaper: cannot become a subreaper: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    // `status` waits for this child's pid only: the orphans are left alone
    if let Err(e) = std::process::Command::new(program).args(rest).status() {
        eprintln!("lazy-reaper: cannot run {program}: {e}");
        std::process::exit(1);
    }
    loop {
        std::thread::park();
    }
}
