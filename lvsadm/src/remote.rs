//! `-H user@host`: run the same lvsadm command line on another machine
//! through `ssh user@host lvsadm ARGS...`.
//!
//! ssh joins its command arguments with spaces and hands the result to the
//! remote user's shell, so every argument is shell-quoted here; lvsadm then
//! becomes ssh (exec), and its exit status is ssh's, which is the remote
//! lvsadm's.

use crate::args::UsageError;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The ssh program run for -H.
const SSH: &str = "ssh";

/// Takes -H/--host (`-H host`, `-Hhost`, `--host host`, `--host=host`) out
/// of `args`, before `--`. Returns the host, if any, and the rest in order.
pub fn split_host(args: &[String]) -> Result<(Option<String>, Vec<String>), UsageError> {
    let mut host: Option<String> = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            rest.push(arg.clone());
            rest.extend(iter.by_ref().cloned());
            break;
        }
        let value = if arg == "-H" || arg == "--host" {
            Some(
                iter.next()
                    .cloned()
                    .ok_or_else(|| UsageError::new(format!("option {arg} needs user@host")))?,
            )
        } else if let Some(v) = arg.strip_prefix("--host=") {
            Some(v.to_string())
        } else {
            arg.strip_prefix("-H").map(str::to_string)
        };
        match value {
            None => rest.push(arg.clone()),
            Some(_) if host.is_some() => {
                return Err(UsageError::new("multiple 'host' options specified"))
            }
            Some(v) if v.is_empty() || v.starts_with('-') => {
                return Err(UsageError::new(format!("invalid host `{v}' for -H")))
            }
            Some(v) => host = Some(v),
        }
    }
    Ok((host, rest))
}

/// `arg` as one word of a POSIX shell command line.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The arguments given to ssh for running `args` as lvsadm on `host`.
pub fn ssh_args(host: &str, args: &[String]) -> Vec<String> {
    let mut v = vec![host.to_string(), "lvsadm".to_string()];
    v.extend(args.iter().map(|a| shell_quote(a)));
    v
}

/// Replaces this process with ssh; returns only when ssh cannot be run.
pub fn exec(host: &str, args: &[String]) -> i32 {
    let err = Command::new(SSH).args(ssh_args(host, args)).exec();
    eprintln!("lvsadm: cannot run {SSH}: {err}");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn host_forms() {
        let want = (Some("root@lb1".to_string()), v(&["-L", "-n"]));
        assert_eq!(
            split_host(&v(&["-H", "root@lb1", "-L", "-n"])).unwrap(),
            want
        );
        assert_eq!(split_host(&v(&["-L", "-Hroot@lb1", "-n"])).unwrap(), want);
        assert_eq!(
            split_host(&v(&["-L", "-n", "--host", "root@lb1"])).unwrap(),
            want
        );
        assert_eq!(
            split_host(&v(&["--host=root@lb1", "-L", "-n"])).unwrap(),
            want
        );
        assert_eq!(
            split_host(&v(&["-L", "-n"])).unwrap(),
            (None, v(&["-L", "-n"]))
        );
        assert_eq!(
            split_host(&v(&["-L", "--", "-H", "x"])).unwrap(),
            (None, v(&["-L", "--", "-H", "x"]))
        );
    }

    #[test]
    fn bad_hosts() {
        assert!(split_host(&v(&["-L", "-H"])).is_err());
        assert!(split_host(&v(&["-H", "-L"])).is_err());
        assert!(split_host(&v(&["--host="])).is_err());
        assert_eq!(
            split_host(&v(&["-H", "a@b", "-H", "c@d"]))
                .unwrap_err()
                .message,
            "multiple 'host' options specified"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("-L"), "-L");
        assert_eq!(shell_quote("198.19.0.100:80"), "198.19.0.100:80");
        assert_eq!(shell_quote("--persistent=300"), "--persistent=300");
        assert_eq!(shell_quote("[2001:db8::1]:80"), "'[2001:db8::1]:80'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote("a;b"), "'a;b'");
    }

    #[test]
    fn ssh_command_line() {
        assert_eq!(
            ssh_args("root@lb1", &v(&["-A", "-t", "[::1]:80", "-s", "wrr"])),
            v(&["root@lb1", "lvsadm", "-A", "-t", "'[::1]:80'", "-s", "wrr"])
        );
    }
}
