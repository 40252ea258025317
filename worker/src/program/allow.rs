//! Which programs a worker runs: none without `--allow-programs`; with `--allow-programs=DIR`,
//! only a program file inside DIR, started so that nothing from the sweep's config reaches the
//! launcher or the interpreter.
//!
//! The rule for `--allow-programs=DIR` (docs/PROGRAMS.md, threat model):
//! - the sweep names a `program`, which does not start with `-`, and which resolves (every
//!   symlink followed, `..` applied) to a regular file inside DIR;
//! - its command, word by word before any macro is expanded, is an optional `${env}`, then
//!   an optional interpreter (`${interpreter}`, `python`, `python3`, `python3.N`), then
//!   `${program}`: nothing else comes before `${program}` — no option (`-c`, `-S`,
//!   `--split-string`, `-C DIR`), no parameter text (`${args…}` would put a parameter such as
//!   `PATH=/evil` before the program, where `env` takes it as an assignment), no literal word;
//! - after `${program}` come the program's own arguments, which only the program reads;
//!   `${envvar:…}` is refused anywhere (it would copy the worker's environment into a command
//!   line that the submitter reads back).

use std::path::Path;

use super::{ProgramOptions, ProgramTrial};

/// Whether `w` names a Python interpreter the worker finds on its own `PATH`.
fn interpreter(w: &str) -> bool {
    if w == "${interpreter}" {
        return true;
    }
    // python, python3, python3.N
    match w.strip_prefix("python") {
        Some("" | "3") => true,
        Some(v) => v
            .strip_prefix("3.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Why `command` may not start a program on a worker restricted to `dir` (`None` when it may).
fn command_refusal(command: &[String], dir: &Path) -> Option<String> {
    let dir = dir.display();
    if let Some(w) = command.iter().find(|w| w.contains("${envvar:")) {
        return Some(format!(
            "the command word {w:?} reads the worker's environment; this worker runs only programs inside {dir}, with no ${{envvar:…}}"
        ));
    }
    let Some(at) = command.iter().position(|w| w == "${program}") else {
        return Some(format!(
            "the command has no ${{program}}; this worker runs only programs inside {dir}, as `${{env}} ${{interpreter}} ${{program}} ${{args}}`"
        ));
    };
    let before = &command[..at];
    let shape_ok = match before {
        [] => true,
        [a] => a == "${env}" || interpreter(a),
        [a, b] => a == "${env}" && interpreter(b),
        _ => false,
    };
    if !shape_ok {
        let words = before
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Some(format!(
            "the command puts {words} before ${{program}}; this worker runs only programs inside {dir}, \
             started by [${{env}}] [${{interpreter}} | python | python3] ${{program}} and then the program's own arguments \
             (no option to env or the interpreter, no parameters before the program)"
        ));
    }
    None
}

/// Why a program may not run on this worker (`None` when it may).
pub(super) fn refusal(t: &ProgramTrial, o: &ProgramOptions) -> Option<String> {
    if !o.allow {
        return Some("this worker does not run programs (start it with --allow-programs)".into());
    }
    let dir = o.only_under.as_ref()?;
    let Some(program) = &t.program else {
        return Some(format!(
            "the sweep has a command and no program; this worker runs only programs inside {}",
            dir.display()
        ));
    };
    if program.starts_with('-') {
        return Some(format!(
            "program {program:?} starts with '-', which an interpreter takes as an option; this worker runs only program files inside {}",
            dir.display()
        ));
    }
    if let Some(why) = t
        .command
        .as_deref()
        .filter(|c| !c.is_empty())
        .and_then(|c| command_refusal(c, dir))
    {
        return Some(why);
    }
    let path = o.workdir.join(program);
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) if p.starts_with(&d) && p.is_file() => None,
        (Ok(p), Ok(d)) if p.starts_with(&d) => {
            Some(format!("program {} is not a regular file", p.display()))
        }
        (Ok(p), Ok(d)) => Some(format!(
            "program {} is not inside {}, the directory this worker runs programs from",
            p.display(),
            d.display()
        )),
        (Err(e), _) => Some(format!("program {}: {e}", path.display())),
        (_, Err(e)) => Some(format!("--allow-programs directory {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(opts: serde_json::Value) -> ProgramTrial {
        let opts = opts.as_object().unwrap().clone();
        ProgramTrial::from_lease("s", 1, 1, "m", serde_json::Map::new(), &opts).unwrap()
    }

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn only_env_and_an_interpreter_come_before_the_program() {
        let d = Path::new("/srv/progs");
        for ok in [
            &["${env}", "${interpreter}", "${program}", "${args}"][..],
            &["${interpreter}", "${program}", "${args_no_hyphens}"],
            &[
                "python3",
                "${program}",
                "--epochs",
                "3",
                "${args_json_file}",
            ],
            &["${env}", "python3.11", "${program}"],
            &["${program}", "${args}"],
            &["${env}", "${program}"],
        ] {
            assert_eq!(command_refusal(&words(ok), d), None, "{ok:?}");
        }
        // The escapes a user found, and their neighbours.
        for (bad, said) in [
            (
                &["python", "-cimport os; os.system('id')"][..],
                "no ${program}",
            ),
            (&["python", "-c", "x", "${program}"], "\"-c\" \"x\" before"),
            (
                &["${env}", "-S python -c x", "${program}"],
                "\"-S python -c x\"",
            ),
            (
                &["${env}", "--split-string=python -c x", "${program}"],
                "--split-string",
            ),
            (
                &["${env}", "-C/elsewhere", "${interpreter}", "${program}"],
                "\"-C/elsewhere\"",
            ),
            (
                &["${env}", "${args_no_hyphens}", "python", "${program}"],
                "${args_no_hyphens}",
            ),
            (&["${args}", "${program}"], "\"${args}\" before"),
            (&["python", "-I", "${program}"], "\"-I\""),
            (&["bash", "${program}"], "\"bash\""),
            (
                &["${env}", "PATH=/evil", "python", "${program}"],
                "PATH=/evil",
            ),
            (
                &["python", "${program}", "${envvar:HOME}"],
                "reads the worker's environment",
            ),
            (
                &["${interpreter}", "${env}", "${program}"],
                "before ${program}",
            ),
        ] {
            let why = command_refusal(&words(bad), d).unwrap_or_else(|| panic!("{bad:?} allowed"));
            assert!(
                why.contains(said) && why.contains("/srv/progs"),
                "{bad:?}: {why}"
            );
        }
    }

    #[test]
    fn the_program_file_lies_inside_the_directory_after_symlinks() {
        let root = std::env::temp_dir().join(format!("sweep-allow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, other) = (root.join("progs"), root.join("other"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(dir.join("train.py"), "").unwrap();
        std::fs::write(other.join("evil.py"), "").unwrap();
        std::os::unix::fs::symlink(other.join("evil.py"), dir.join("link.py")).unwrap();
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        let o = ProgramOptions {
            allow: true,
            only_under: Some(dir.clone()),
            workdir: dir.clone(),
            ..ProgramOptions::default()
        };
        let trial = |program: &str| lease(serde_json::json!({ "program": program }));
        assert_eq!(refusal(&trial("train.py"), &o), None);
        for (p, said) in [
            ("link.py", "is not inside"),
            ("../other/evil.py", "is not inside"),
            ("pkg", "not a regular file"),
            ("missing.py", "No such file"),
            ("-cimport os", "starts with '-'"),
        ] {
            let why = refusal(&trial(p), &o).unwrap_or_else(|| panic!("{p} allowed"));
            assert!(why.contains(said), "{p}: {why}");
        }
        let no_program = lease(serde_json::json!({ "command": ["python", "-c", "x"] }));
        assert!(refusal(&no_program, &o).unwrap().contains("no program"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
