//! Prints its arguments (without argv[0]) separated by spaces, like `echo`.
//! With `--env NAME` it prints the value of NAME instead (empty if unset),
//! and with `--pwd` the current directory after entering `$PWD`.
fn main() {
    guest_examples::enter_pwd();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--env") => {
            for name in &args[1..] {
                println!("{}={}", name, std::env::var(name).unwrap_or_default());
            }
        }
        Some("--all-env") => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
        }
        Some("--pwd") => match std::env::current_dir() {
            Ok(dir) => println!("{}", dir.display()),
            Err(e) => {
                eprintln!("echo-args: {e}");
                std::process::exit(1);
            }
        },
        _ => println!("{}", args.join(" ")),
    }
}
