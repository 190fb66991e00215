//! The `sigway` command: sigver's command line (`-h` is the host, as in
//! sigver) plus `--config`, turned into [`Settings`] and run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use sigway::config::{Overrides, Settings};

const EXAMPLES: &str = "\
Examples:

  $ sigway                       # Signaling server is listening on 0.0.0.0:8000
  $ sigway -h 192.168.0.1 -p 80  # Signaling server is listening on 192.168.0.1:80
  $ sigway --key ./private.key --cert ./primary.crt --ca ./intermediate.crt --port 443  # Signaling server is listening on 0.0.0.0:443
  $ sigway --config conf.json    # videre-server settings (Port, TLS, Cert, Key)
  $ sigway --config config/default.toml

Environment: SIGWAY_PORT=9000, SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS=1000, ...
(every key of config/default.toml, nested keys joined by __).";

/// Signaling server for WebRTC: Netflux (sigver protocol, WebSocket at /<key>)
/// and videre-client (SockJS at /echo) on one port.
#[derive(Parser, Debug)]
#[command(name = "sigway", version, disable_help_flag = true, after_help = EXAMPLES)]
struct Cli {
    /// Select host address to bind to [default: 0.0.0.0]
    #[arg(short = 'h', long, value_name = "IP")]
    host: Option<String>,
    /// Select port to use [default: 8000]
    #[arg(short = 'p', long, value_name = "NUMBER")]
    port: Option<u16>,
    /// Private key for the certificate
    #[arg(short = 'k', long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The server certificate
    #[arg(short = 'c', long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The additional intermediate certificate or certificates that web browsers will need in order to validate the server certificate
    #[arg(short = 'a', long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Settings file: sigway TOML, or videre-server's conf.json [default: ./conf.json if present]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config_file: cli.config,
        host: cli.host,
        port: cli.port,
        key: cli.key,
        cert: cli.cert,
        ca: cli.ca,
    };
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sigway: {err}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = sigway::init_logging(&settings.log);
    match actix_web::rt::System::new().block_on(sigway::app::run_reloadable(settings, overrides)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sigway: {err}");
            ExitCode::from(1)
        }
    }
}
