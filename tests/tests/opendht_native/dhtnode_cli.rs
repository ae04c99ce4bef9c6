//! One `dhtnode` with its command line on a pipe: started (in this namespace or a named
//! one), given commands, its output waited for; killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::PATIENCE;

/// One `dhtnode` with its command line on a pipe; killed when dropped.
pub(crate) struct DhtNodeCli {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
}

impl DhtNodeCli {
    pub(crate) fn start(args: &[&str]) -> DhtNodeCli {
        DhtNodeCli::start_in(None, args)
    }

    /// Starts it in the named network namespace `ns` (`ip netns exec`), or in this one.
    pub(crate) fn start_in(ns: Option<&str>, args: &[&str]) -> DhtNodeCli {
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/bin/dhtnode"]);
                c
            }
            None => Command::new("/usr/bin/dhtnode"),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dhtnode starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        DhtNodeCli { child, stdin, out }
    }

    /// `N` dhtnodes on this namespace's loopback, ports 4222, 4223, …, the others
    /// bootstrapping from the first. The first is bound (it said it runs) before the others
    /// start: a bootstrap ping that finds no socket is not tried again for minutes, and on a
    /// loaded machine a node started first never listed the other (CI: "A never listed B"
    /// after 60 s). Each has said it runs when this returns.
    pub(crate) fn network<const N: usize>() -> [DhtNodeCli; N] {
        let port = |i: usize| 4222 + i;
        let nodes: [DhtNodeCli; N] = std::array::from_fn(|i| {
            let p = port(i).to_string();
            let node = match i {
                0 => DhtNodeCli::start(&["-p", &p]),
                _ => DhtNodeCli::start(&["-p", &p, "-b", "127.0.0.1:4222"]),
            };
            if i == 0 {
                node.wait_for(0, "running on port 4222");
            }
            node
        });
        for (i, node) in nodes.iter().enumerate().skip(1) {
            node.wait_for(0, &format!("running on port {}", port(i)));
        }
        nodes
    }

    pub(crate) fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("dhtnode reads its command");
        self.stdin.flush().expect("flush");
    }

    /// Its `g word` command, to its end: every value it found, then its own "Get: completed"
    /// (or "Get: failure") line; returns what it printed. `dhtnode` prints a get in three
    /// lines or more ("Get: found N value(s)", each value, and the end), which a reader on
    /// its pipe may see apart: waiting for the first "Get: " could return before the value,
    /// or at the end line of the get before (CI, under load: the next get's output was
    /// only the last one's "Get: completed"). So each get is waited for to its end.
    pub(crate) fn get(&mut self, word: &str) -> String {
        let from = self.output_len();
        self.command(&format!("g {word}"));
        self.wait_until(from, &format!("the end of its get of {word:?}"), |out| {
            out.contains("Get: completed") || out.contains("Get: failure")
        })
    }

    /// Waits until its output after `from` contains `what`; returns that output.
    pub(crate) fn wait_for(&self, from: usize, what: &str) -> String {
        self.wait_until(from, &format!("{what:?}"), |out| out.contains(what))
    }

    /// Waits until its output after `from` satisfies `done` (at most [`PATIENCE`]);
    /// returns that output. `awaited` names what it waits for, in the failure.
    fn wait_until(&self, from: usize, awaited: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = self.out.lock().expect("lock").clone();
            if let Some(after) = out.get(from..).filter(|s| done(s)) {
                return after.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "dhtnode never printed {awaited}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether its output after `from` contains `what` (without waiting).
    pub(crate) fn printed(&self, from: usize, what: &str) -> bool {
        let out = self.out.lock().expect("lock");
        out.get(from..).is_some_and(|s| s.contains(what))
    }

    pub(crate) fn output_len(&self) -> usize {
        self.out.lock().expect("lock").len()
    }
}

impl Drop for DhtNodeCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
