//! `whoami`, `id`, `hostname` and `uname`: one consistent sandbox identity,
//! the same as the environment's `USER` (`sandbox`) and what `initialize`
//! reports (`linux`). Nothing is read from the host: its user, name and
//! kernel are not the sandbox's to show.

use super::context::{Context, Status};

pub const USER: &str = "sandbox";
pub const UID: u32 = 1000;
pub const HOSTNAME: &str = "sandbox";
const RELEASE: &str = "6.0.0-wasm";
const VERSION: &str = "#1 SMP";
const MACHINE: &str = "wasm32";

async fn usage(cx: &Context<'_>, cmd: &str, arg: &str) -> Status {
    cx.err(&format!(
        "{cmd}: invalid option -- '{}'\nTry '{cmd} --help' for more information.\n",
        arg.trim_start_matches('-')
    ))
    .await;
    Ok(1)
}

pub async fn whoami(cx: &Context<'_>, args: &[String]) -> Status {
    if let Some(a) = args.first() {
        return usage(cx, "whoami", a).await;
    }
    cx.out(format!("{USER}\n").as_bytes()).await?;
    Ok(0)
}

pub async fn id(cx: &Context<'_>, args: &[String]) -> Status {
    let (mut only, mut name) = (None, false);
    for a in args {
        if a == "--name" {
            name = true;
            continue;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty() && !f.starts_with('-'))
        else {
            if a == USER {
                continue;
            }
            cx.err(&format!("id: '{a}': no such user\n")).await;
            return Ok(1);
        };
        for c in flags.chars() {
            match c {
                'u' | 'g' | 'G' => only = Some(c),
                'n' => name = true,
                'r' => {}
                _ => return usage(cx, "id", &c.to_string()).await,
            }
        }
    }
    let line = match (only, name) {
        (Some(_), true) => USER.to_owned(),
        (Some(_), false) => UID.to_string(),
        (None, _) => format!("uid={UID}({USER}) gid={UID}({USER}) groups={UID}({USER})"),
    };
    cx.out(format!("{line}\n").as_bytes()).await?;
    Ok(0)
}

pub async fn hostname(cx: &Context<'_>, args: &[String]) -> Status {
    match args.first().map(String::as_str) {
        None | Some("-s" | "--short" | "-f" | "--fqdn" | "--long") => {
            cx.out(format!("{HOSTNAME}\n").as_bytes()).await?;
            Ok(0)
        }
        Some("-i" | "-I" | "--ip-address" | "--all-ip-addresses") => {
            cx.out(b"127.0.0.1\n").await?;
            Ok(0)
        }
        Some(a) if a.starts_with('-') => usage(cx, "hostname", a).await,
        Some(_) => {
            cx.err("hostname: you must be root to change the host name\n").await;
            Ok(1)
        }
    }
}

pub async fn uname(cx: &Context<'_>, args: &[String]) -> Status {
    // The fields in uname's order: -s -n -r -v -m -p -i -o.
    let fields = ["Linux", HOSTNAME, RELEASE, VERSION, MACHINE, MACHINE, MACHINE, "GNU/Linux"];
    let mut want = [false; 8];
    for a in args {
        let flags: Vec<char> = match a.as_str() {
            "--all" => vec!['a'],
            "--kernel-name" => vec!['s'],
            "--nodename" => vec!['n'],
            "--kernel-release" => vec!['r'],
            "--kernel-version" => vec!['v'],
            "--machine" => vec!['m'],
            "--operating-system" => vec!['o'],
            s if s.starts_with('-') && !s.starts_with("--") && s.len() > 1 => {
                s[1..].chars().collect()
            }
            s => {
                cx.err(&format!(
                    "uname: extra operand '{s}'\nTry 'uname --help' for more information.\n"
                ))
                .await;
                return Ok(1);
            }
        };
        for c in flags {
            match "snrvmpio".find(c) {
                Some(i) => want[i] = true,
                None if c == 'a' => {
                    // -a omits -p and -i when they are unknown; ours are known.
                    want = [true, true, true, true, true, false, false, true];
                }
                None => return usage(cx, "uname", &c.to_string()).await,
            }
        }
    }
    if !want.contains(&true) {
        want[0] = true;
    }
    let line: Vec<&str> = fields.iter().zip(want).filter(|(_, w)| *w).map(|(f, _)| *f).collect();
    cx.out(format!("{}\n", line.join(" ")).as_bytes()).await?;
    Ok(0)
}
