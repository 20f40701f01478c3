use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    voxgate::cli::run().await
}
