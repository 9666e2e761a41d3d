//! `sb`: see the library's docs.

fn main() -> std::process::ExitCode {
    second_brain_cli::main()
}
