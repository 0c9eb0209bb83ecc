//! The command line: `mock-provider --name NAME [--listen ADDR] [--control ADDR]
//! [--mode MODE] [--validate on|off]`, parsed into a [`Config`]. Hand-written: five flags
//! do not need a parser crate.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::modes::Mode;

pub const USAGE: &str =
    "usage: mock-provider --name NAME [--listen ADDR] [--control ADDR] [--mode MODE] [--validate on|off]
  ADDR defaults to 127.0.0.1:0 (a free port); a bare port means 127.0.0.1:PORT
  MODE is a mode name or a JSON object as POST /mode takes, e.g. '{\"mode\":\"error\",\"status\":503}'
  --validate: Anthropic request validation on /v1/messages (default on)
  see examples/mock-provider/README.md for the modes and the control API";

#[derive(Debug)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub mode: Mode,
    pub validate: bool,
}

/// Returns `None` when `--help` was printed.
pub fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut name = None;
    let mut listen = loopback;
    let mut control = loopback;
    let mut mode = Mode::healthy();
    let mut validate = true;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            let _ = writeln!(std::io::stdout().lock(), "{USAGE}");
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{flag} needs a value\n{USAGE}")),
        };
        match flag.as_str() {
            "--name" => name = Some(parse_name(&value)?),
            "--listen" => listen = parse_addr(&value)?,
            "--control" => control = parse_addr(&value)?,
            "--mode" => mode = Mode::from_cli(&value)?,
            "--validate" => {
                validate = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("--validate takes on or off, got {value:?}")),
                }
            }
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("--name is required\n{USAGE}"))?;
    Ok(Some(Config {
        name,
        listen,
        control,
        mode,
        validate,
    }))
}

fn parse_name(value: &str) -> Result<String, String> {
    let valid =
        !value.is_empty() && value.len() <= 100 && value.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "--name must be 1-100 printable ASCII characters without spaces, got {value:?}"
        ))
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    value
        .parse()
        .map_err(|_| format!("invalid address {value:?}, expected IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::Kind;

    fn parse(args: &[&str]) -> Result<Option<Config>, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_take_separate_or_inline_values_with_loopback_defaults() {
        let c = parse(&[
            "--name",
            "openai",
            "--listen=18001",
            "--control",
            "127.0.0.1:18101",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.name, "openai");
        assert_eq!(c.listen.to_string(), "127.0.0.1:18001");
        assert_eq!(c.control.to_string(), "127.0.0.1:18101");
        assert_eq!(c.mode, Mode::healthy());
        assert!(c.validate);
        let c = parse(&[
            "--name=x",
            "--mode",
            r#"{"mode":"error","status":503}"#,
            "--validate=off",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.mode.kind, Kind::Error { status: 503 });
        assert!(!c.validate);
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_reason() {
        assert!(parse(&[]).unwrap_err().contains("--name is required"));
        assert!(parse(&["--name"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--name", "a b"]).unwrap_err().contains("printable"));
        assert!(parse(&["--name", "a", "--listen", "nowhere"])
            .unwrap_err()
            .contains("IP:PORT"));
        assert!(parse(&["--name", "a", "--mode", "sideways"])
            .unwrap_err()
            .contains("unknown mode"));
        assert!(parse(&["--name", "a", "--validate", "maybe"]).is_err());
        assert!(parse(&["--name", "a", "--bogus", "1"])
            .unwrap_err()
            .contains("--bogus"));
    }
}
