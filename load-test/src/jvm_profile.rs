//! async-profiler attached to a running JVM for one phase of the bench:
//! where each engine spends its CPU per order.
//!
//! The agent (`libasyncProfiler.so`, from Maven Central's
//! `tools.profiler:async-profiler`, fetched by `load-test/async-profiler`)
//! is loaded into the live JVM with `jcmd <pid> JVMTI.agent_load`, the
//! same way async-profiler's own launcher attaches: `start` before the
//! phase, `stop` with a file after it. CPU time is sampled with the
//! process's interval timer (`itimer`, no perf_events needed), every
//! stack labelled with its thread. The collapsed stacks are kept for a
//! flame graph; [`Profile`] sums them by thread pool, by the frame that
//! burnt the CPU, and by the innermost frame of the engine's own code.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A profiler running in one JVM.
pub struct JvmProfile {
    lib: PathBuf,
    pid: u32,
    file: PathBuf,
}

impl JvmProfile {
    /// Starts sampling `pid` every millisecond of CPU time; its stacks go
    /// to `file` (collapsed) on [`JvmProfile::stop`].
    pub fn start(lib: &Path, pid: u32, file: PathBuf) -> anyhow::Result<JvmProfile> {
        let profile = JvmProfile {
            lib: lib.to_owned(),
            pid,
            file,
        };
        profile.agent("start,event=itimer,interval=1ms,threads")?;
        Ok(profile)
    }

    /// Stops sampling and reads what was written.
    pub fn stop(self) -> anyhow::Result<Profile> {
        self.agent(&format!("stop,collapsed,file={}", self.file.display()))?;
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        Ok(Profile::from_collapsed(&text))
    }

    fn agent(&self, options: &str) -> anyhow::Result<()> {
        let out = Command::new("jcmd")
            .arg(self.pid.to_string())
            .arg("JVMTI.agent_load")
            .arg(&self.lib)
            // Quoted: jcmd would read `start,event=itimer` as its own
            // `name=value` argument.
            .arg(format!("\"{options}\""))
            .output()
            .context("jcmd (a JDK's bin on PATH)")?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        // jcmd exits 0 even when the agent refused; the agent's answer is
        // "return code: 0" on success.
        if !out.status.success() || !said.contains("return code: 0") {
            bail!("async-profiler `{options}` in JVM {}: {said}", self.pid);
        }
        Ok(())
    }
}

/// Samples summed three ways.
#[derive(Debug, Default)]
pub struct Profile {
    pub samples: u64,
    /// By thread pool (a thread's name with its instance numbers as `N`).
    pub threads: Vec<(String, u64)>,
    /// By the frame that was running (self time).
    pub frames: Vec<(String, u64)>,
    /// By the innermost frame of the engine's own code
    /// (`org.apache.{kafka,cassandra}`, `kafka.`, `org.opensearch`), so
    /// that time in Netty, the JDK or the kernel counts where it was asked
    /// for; stacks without one count under their running frame.
    pub own: Vec<(String, u64)>,
}

impl Profile {
    /// Sums async-profiler's collapsed output (`frame;frame;... count`,
    /// the thread's frame first).
    pub fn from_collapsed(text: &str) -> Profile {
        let mut threads: HashMap<String, u64> = HashMap::new();
        let mut frames: HashMap<String, u64> = HashMap::new();
        let mut own: HashMap<String, u64> = HashMap::new();
        let mut samples = 0;
        for line in text.lines() {
            let Some((stack, count)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            let mut stack = stack.split(';');
            let Some(thread) = stack.next() else { continue };
            let stack: Vec<&str> = stack.collect();
            let Some(running) = stack.last() else {
                continue;
            };
            samples += count;
            *threads.entry(thread_pool(thread)).or_default() += count;
            *frames.entry(method(running)).or_default() += count;
            let mine = stack
                .iter()
                .rev()
                .find(|f| is_engine_code(f))
                .unwrap_or(running);
            *own.entry(method(mine)).or_default() += count;
        }
        let sorted = |m: HashMap<String, u64>| {
            let mut v: Vec<_> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v
        };
        Profile {
            samples,
            threads: sorted(threads),
            frames: sorted(frames),
            own: sorted(own),
        }
    }

    /// The `n` largest entries of each view, as percentages of all samples.
    pub fn report(&self, name: &str, n: usize) -> String {
        let mut out = format!("{name}: {} samples (1 per ms of CPU)\n", self.samples);
        let total = self.samples.max(1) as f64;
        for (title, view) in [
            ("threads", &self.threads),
            ("running frame", &self.frames),
            ("own code", &self.own),
        ] {
            out.push_str(&format!("  by {title}:\n"));
            for (what, count) in view.iter().take(n) {
                out.push_str(&format!(
                    "    {:5.1}%  {what}\n",
                    *count as f64 * 100.0 / total
                ));
            }
        }
        out
    }
}

/// `[Native-Transport-Requests-12 tid=4711]` -> `Native-Transport-Requests-N`:
/// a number after a separator is an instance and becomes `N`; one right
/// after a letter is part of the name (`C2 CompilerThre`, `G1 Conc#N`).
fn thread_pool(frame: &str) -> String {
    let name = frame.trim_start_matches('[').trim_end_matches(']');
    let name = name.split(" tid=").next().unwrap_or(name);
    let mut out = String::with_capacity(name.len());
    let mut previous = ' ';
    let mut instance = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !instance && !previous.is_ascii_digit() {
                instance = !previous.is_alphabetic();
                if instance {
                    out.push('N');
                }
            }
            if !instance {
                out.push(c);
            }
        } else {
            out.push(c);
            instance = false;
        }
        previous = c;
    }
    out
}

/// A frame without async-profiler's type suffix (`_[j]`, `_[k]`, ...),
/// Java's slashes as dots.
fn method(frame: &str) -> String {
    let frame = match frame.rfind("_[") {
        Some(i) if frame.ends_with(']') => &frame[..i],
        _ => frame,
    };
    frame.replace('/', ".")
}

fn is_engine_code(frame: &str) -> bool {
    let f = frame.replace('/', ".");
    [
        "org.apache.kafka.",
        "kafka.",
        "org.apache.cassandra.",
        "org.opensearch.",
    ]
    .iter()
    .any(|p| f.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsed_stacks_are_summed_by_thread_pool_running_frame_and_own_code() {
        let text = "\
[Native-Transport-Requests-1 tid=10];java/lang/Thread.run;org/apache/cassandra/service/paxos/Paxos.cas;java/util/HashMap.get 3
[Native-Transport-Requests-2 tid=11];java/lang/Thread.run;org/apache/cassandra/db/commitlog/CommitLog.add;sun/nio/ch/FileDispatcherImpl.force0_[j] 5
[COMMIT-LOG-WRITER tid=12];java/lang/Thread.run;fsync_[k] 2
[C2 CompilerThre tid=13];Compile::Optimize 1
[G1 Conc#10 tid=14];G1ConcurrentMark 1
not a stack line
";
        let p = Profile::from_collapsed(text);
        assert_eq!(p.samples, 12);
        assert_eq!(
            p.threads,
            vec![
                ("Native-Transport-Requests-N".to_owned(), 8),
                ("COMMIT-LOG-WRITER".to_owned(), 2),
                ("C2 CompilerThre".to_owned(), 1),
                ("G1 Conc#N".to_owned(), 1),
            ]
        );
        assert_eq!(
            p.frames[0],
            ("sun.nio.ch.FileDispatcherImpl.force0".to_owned(), 5)
        );
        assert_eq!(
            p.own,
            vec![
                (
                    "org.apache.cassandra.db.commitlog.CommitLog.add".to_owned(),
                    5
                ),
                ("org.apache.cassandra.service.paxos.Paxos.cas".to_owned(), 3),
                ("fsync".to_owned(), 2),
                ("Compile::Optimize".to_owned(), 1),
                ("G1ConcurrentMark".to_owned(), 1),
            ]
        );
        let report = p.report("cassandra", 2);
        assert!(
            report.contains(" 66.7%  Native-Transport-Requests-N"),
            "{report}"
        );
    }
}
