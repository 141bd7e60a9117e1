//! `worker --template` over its socket, as a provisioner drives it: a command line the
//! worker would refuse is refused with clap's message, a good one is forked as a child of
//! the template's parent (this test), garbage is answered, and the end of its input ends it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use volley_worker::template::{Reply, Request};

fn ask(conn: &mut BufReader<UnixStream>, line: &str) -> Reply {
    conn.get_ref().write_all(line.as_bytes()).expect("write");
    let mut reply = String::new();
    conn.read_line(&mut reply).expect("a reply");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"))
}

fn request(args: &[&str], log: Option<std::path::PathBuf>) -> String {
    let request = Request {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        log,
    };
    serde_json::to_string(&request).expect("json") + "\n"
}

#[test]
fn the_template_refuses_bad_command_lines_forks_good_ones_as_its_parents_children_and_ends_with_its_input() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    ours.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut template = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("--template")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()
        .expect("worker --template");
    let mut conn = BufReader::new(ours);

    match ask(&mut conn, &request(&["1"], None)) {
        Reply::Failed(why) => assert!(why.contains("DISPATCHER"), "clap's message: {why}"),
        other => panic!("a missing argument was forked: {other:?}"),
    }
    match ask(&mut conn, "{not json\n") {
        Reply::Failed(why) => assert!(why.contains("not a request"), "{why}"),
        other => panic!("{other:?}"),
    }

    let dir = std::env::temp_dir().join(format!("volley-template-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("instance.log");
    // A dispatcher nobody listens on: the instance retries, logging each try.
    let args = ["1", "tcp://127.0.0.1:9", "--name", "forked-1", "--exit-with-parent"];
    let pid = match ask(&mut conn, &request(&args, Some(log.clone()))) {
        Reply::Forked(pid) => pid,
        other => panic!("{other:?}"),
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the instance runs");
    let ppid: u32 = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    assert_eq!(ppid, std::process::id(), "the template's parent is the instance's");

    // Its input ended, the template leaves; the instance it forked does not go with it.
    drop(conn);
    let status = template.wait().expect("the template ends");
    assert!(status.success(), "{status}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("not reachable")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance logs to its own file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let instance = nix::unistd::Pid::from_raw(pid as i32);
    assert!(
        nix::sys::signal::kill(instance, None).is_ok(),
        "it outlives its template"
    );
    nix::sys::signal::kill(instance, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let ended = nix::sys::wait::waitpid(instance, None).expect("waited for as our child");
    assert_eq!(ended, nix::sys::wait::WaitStatus::Exited(instance, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
