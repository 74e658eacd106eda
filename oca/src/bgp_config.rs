//! Renders the BIRD 2 configuration of the appliance from its `[bgp]` section
//! (`oca bgp-config`), from the templates in `bgp-config/` (`bird.conf.in` and one
//! `session-{family}.conf.in` per configured address family).
//!
//! The rendering is a pure function of the config: `{{name}}` placeholders are replaced with
//! validated values (addresses, AS numbers, lengths), so nothing a config says can inject
//! BIRD syntax. It does not run BIRD, check the result with `bird -p` (the tests and the
//! install script do) or write files.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{BgpSession, Config};

/// The main template.
pub const MAIN_TEMPLATE: &str = include_str!("../../bgp-config/bird.conf.in");
/// The IPv4 session template.
pub const IPV4_TEMPLATE: &str = include_str!("../../bgp-config/session-ipv4.conf.in");
/// The IPv6 session template.
pub const IPV6_TEMPLATE: &str = include_str!("../../bgp-config/session-ipv6.conf.in");

/// BIRD protocol name of the IPv4 session; the appliance asks BIRD for its routes.
pub const PROTOCOL_V4: &str = "isp4";
/// BIRD protocol name of the IPv6 session.
pub const PROTOCOL_V6: &str = "isp6";

/// Replace `{{key}}` placeholders; an unknown or unreplaced placeholder is an error (a
/// template and this code out of step).
fn fill(template: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    match out.find("{{") {
        Some(i) => Err(format!(
            "template placeholder left unfilled: {}",
            out[i..].lines().next().unwrap_or("")
        )),
        None => Ok(out),
    }
}

fn session(
    template: &str,
    protocol: &str,
    s: &BgpSession<crate::config::Ipv4>,
    local_as: u32,
    max_prefixes: u32,
) -> Result<String, String> {
    let Some(neighbor) = s.neighbor else {
        return Ok(String::new());
    };
    fill(
        template,
        &[
            ("protocol", protocol.to_string()),
            (
                "local_address",
                s.local_address.map_or(String::new(), |a| format!("{a} ")),
            ),
            ("local_as", local_as.to_string()),
            ("neighbor", neighbor.to_string()),
            ("neighbor_as", s.neighbor_as.to_string()),
            ("min_length", s.min_length.to_string()),
            ("max_length", s.max_length.to_string()),
            ("max_prefixes", max_prefixes.to_string()),
        ],
    )
}

/// The BIRD configuration for `cfg` (read from `source`, named in the header). Errors list
/// every `[bgp]` key that is missing or wrong, one per line.
pub fn render(cfg: &Config, source: &Path) -> Result<String, String> {
    let b = &cfg.bgp;
    let errs = b.session_errors();
    if !errs.is_empty() {
        return Err(errs.join("\n"));
    }
    let router_id = b
        .router_id
        .ok_or_else(|| "bgp.router-id: must be set".to_string())?;
    let mut sessions = String::new();
    sessions += &session(
        IPV4_TEMPLATE,
        PROTOCOL_V4,
        &b.ipv4.clone().erase(),
        b.local_as,
        b.max_prefixes,
    )?;
    sessions += &session(
        IPV6_TEMPLATE,
        PROTOCOL_V6,
        &b.ipv6.clone().erase(),
        b.local_as,
        b.max_prefixes,
    )?;
    let mut out = fill(
        MAIN_TEMPLATE,
        &[
            ("id", cfg.server.id.clone()),
            ("source", source.display().to_string()),
            ("router_id", router_id.to_string()),
            ("max_prefixes", b.max_prefixes.to_string()),
            ("sessions", sessions),
        ],
    )?;
    if !out.ends_with('\n') {
        let _ = writeln!(out);
    }
    Ok(out)
}

/// The BIRD protocols the appliance reads routes from: one per configured family.
pub fn protocols(cfg: &crate::config::BgpConfig) -> Vec<(crate::bgp::Family, &'static str)> {
    let mut v = Vec::new();
    if cfg.ipv4.neighbor.is_some() {
        v.push((crate::bgp::Family::Ipv4, PROTOCOL_V4));
    }
    if cfg.ipv6.neighbor.is_some() {
        v.push((crate::bgp::Family::Ipv6, PROTOCOL_V6));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example appliance config of `bgp-config/`, whose rendering is checked in.
    pub const EXAMPLE_TOML: &str = include_str!("../../bgp-config/example-oca.toml");
    const EXAMPLE_CONF: &str = include_str!("../../bgp-config/bird.conf.example");

    fn example() -> Config {
        Config::parse(EXAMPLE_TOML, Path::new("/etc/oca/oca.toml")).expect("example parses")
    }

    #[test]
    fn example_renders_to_the_checked_in_file() {
        let out = render(&example(), Path::new("/etc/oca/oca.toml")).unwrap();
        assert_eq!(
            out, EXAMPLE_CONF,
            "bgp-config/bird.conf.example is out of date: render it again with\n  \
             oca bgp-config -c bgp-config/example-oca.toml --source /etc/oca/oca.toml > bgp-config/bird.conf.example"
        );
    }

    #[test]
    fn sessions_follow_the_config() {
        let mut cfg = example();
        let both = render(&cfg, Path::new("x")).unwrap();
        assert!(both.contains("protocol bgp isp4 {") && both.contains("protocol bgp isp6 {"));
        assert!(both.contains("neighbor 192.0.2.1 as 64500;"), "{both}");
        assert!(both.contains("local 192.0.2.10 as 64512;"), "{both}");
        assert!(both.contains("net.len < 8 || net.len > 24"));
        assert!(both.contains("import limit 100000 action block;"));
        assert_eq!(both.matches("export none;").count(), 2);
        assert!(!both.contains("{{"));
        // Only IPv6, without a source address, other bounds.
        cfg.bgp.ipv4.neighbor = None;
        cfg.bgp.ipv4.local_address = None;
        cfg.bgp.ipv6.local_address = None;
        cfg.bgp.ipv6.min_length = 19;
        cfg.bgp.ipv6.max_length = 56;
        let v6 = render(&cfg, Path::new("x")).unwrap();
        assert!(!v6.contains("protocol bgp isp4") && v6.contains("protocol bgp isp6"));
        assert!(v6.contains("local as 64512;"), "{v6}");
        assert!(v6.contains("net.len < 19 || net.len > 56"));
        assert_eq!(
            protocols(&cfg.bgp),
            vec![(crate::bgp::Family::Ipv6, PROTOCOL_V6)]
        );
    }

    #[test]
    fn incomplete_bgp_section_is_refused_with_every_key() {
        let cfg = Config::parse(
            &format!("[admin]\ntoken-sha256 = \"{}\"\n", "a".repeat(64)),
            Path::new("/etc/oca/oca.toml"),
        )
        .unwrap();
        let err = render(&cfg, Path::new("x")).unwrap_err();
        for key in ["bgp.router-id", "bgp.local-as", "bgp: set ipv4.neighbor"] {
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn unfilled_placeholders_are_errors() {
        assert!(fill("a {{x}} b", &[("x", "1".into())]).unwrap() == "a 1 b");
        assert!(fill("a {{y}} b", &[("x", "1".into())]).is_err());
    }
}
