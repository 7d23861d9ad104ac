fn main() -> std::process::ExitCode {
    gslbd::cli::main()
}
