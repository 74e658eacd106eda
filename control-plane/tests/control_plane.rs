//! End to end over a real SQLite file in a temp dir: catalog import (file and origin listing),
//! player tokens and revocation, URL-signing key rotation, ClearKey licenses by plan, view
//! events, recommendations and forecast, appliance tokens, metrics, and reopening the
//! database (migrations idempotent, data kept, wrong KEK refused).

use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use control_plane::{
    Config, ControlPlane, Error, Kek, LicenseError, RowKind, TokenRejection, ViewEvent,
};
use oca_common::ObjectKey;
use oca_common::token::{self, KeySet, TokenError, TokenParams};
use oca_common::wire::RenditionId;

const CATALOG: &str = include_str!("../examples/catalog.toml");
/// 2026-11-22T12:00:00Z.
const NOW: u64 = 1_795_348_800;
const DAY: u64 = 86_400;

fn config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.database.path = dir.join("cp.db");
    cfg.kek.key_file = Some(dir.join("kek"));
    cfg
}

fn rid(s: &str) -> RenditionId {
    RenditionId::parse(s).unwrap()
}

fn sign_url(keys: &KeySet, key: &str) -> String {
    let k = keys.newest().unwrap();
    token::sign(
        k,
        &TokenParams {
            exp: NOW + 3600,
            kid: k.kid.clone(),
            n: 1,
            client_prefix: None,
        },
        &ObjectKey::parse(key).unwrap(),
    )
    .unwrap()
}

fn verify_url(keys: &KeySet, tok: &str, key: &str) -> Result<(), TokenError> {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    token::verify(tok, &ObjectKey::parse(key).unwrap(), keys, ip, NOW, 30).map(|_| ())
}

fn license_body(kids: &[control_plane::KeyId]) -> Vec<u8> {
    let kids: Vec<String> = kids.iter().map(|k| k.to_b64url()).collect();
    serde_json::to_vec(&serde_json::json!({ "kids": kids, "type": "temporary" })).unwrap()
}

#[test]
fn full_lifecycle_on_a_real_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::write(dir.path().join("kek"), Kek::generate_base64().unwrap()).unwrap();

    let cp = ControlPlane::open(&cfg).unwrap();
    assert_eq!(cp.schema_version().unwrap(), 1);

    // ---- catalog from the example file
    let s = cp.import_catalog_toml(CATALOG, NOW).unwrap();
    assert_eq!((s.titles, s.renditions, s.new_content_keys), (3, 9, 9));
    let tos = cp.title("tears-of-steel").unwrap();
    assert_eq!(tos.renditions.len(), 4);
    assert_eq!(tos.files[0].name, "master.m3u8");
    let m = cp
        .rendition_manifest(&rid("tears-of-steel/1080p-h264"))
        .unwrap();
    assert!(m.validate().is_ok());
    assert_eq!(m.files[0].name, "init.mp4");
    assert_eq!(m.files.len(), 4);
    // Importing again replaces, keeps content keys.
    let kid_before = cp
        .content_key_id(&rid("tears-of-steel/720p-h264"), NOW)
        .unwrap();
    assert_eq!(
        cp.import_catalog_toml(CATALOG, NOW)
            .unwrap()
            .new_content_keys,
        0
    );
    assert_eq!(
        cp.content_key_id(&rid("tears-of-steel/720p-h264"), NOW)
            .unwrap(),
        kid_before
    );

    // ---- bad catalogs: clear errors, nothing stored
    let broken = CATALOG.replacen("id = \"sintel\"", "id = \"sintel", 1);
    assert!(matches!(
        cp.import_catalog_toml(&broken, NOW),
        Err(Error::CatalogSyntax(_))
    ));
    let dup = format!(
        "{CATALOG}\n[[title]]\nid = \"new-one\"\nname = \"N\"\n\n[[title]]\nid = \"sintel\"\nname = \"again\"\n"
    );
    let err = cp.import_catalog_toml(&dup, NOW).unwrap_err();
    assert!(
        err.to_string().contains("\"sintel\"") && err.to_string().contains("duplicate"),
        "{err}"
    );
    assert_eq!(err.http_status(), 400);
    assert!(
        matches!(cp.title("new-one"), Err(Error::NotFound { .. })),
        "nothing stored"
    );
    let bad_sha = CATALOG.replacen("sha256 = \"86b9", "sha256 = \"ZZb9", 1);
    let err = cp
        .import_catalog_toml(&bad_sha, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"tears-of-steel\"")
            && err.contains("\"2160p-hevc\"")
            && err.contains("\"init.mp4\"")
            && err.contains("sha256"),
        "{err}"
    );

    // ---- origin listing: a new rendition and a new title
    let h = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let listing = format!(
        r#"[{{"key":"sintel/480p-h264/seg-00002.m4s","size":9,"sha256":"{h}"}},
            {{"key":"sintel/480p-h264/init.mp4","size":5,"sha256":"{h}"}},
            {{"key":"sintel/480p-h264/seg-00001.m4s","size":9,"sha256":"{h}"}},
            {{"key":"cosmos/master.m3u8","size":3,"sha256":"{h}"}},
            {{"key":"cosmos/1080p-h264/seg-00001.m4s","size":3,"sha256":"{h}"}}]"#
    );
    let s = cp.import_origin_listing_json(&listing, NOW).unwrap();
    assert_eq!((s.titles, s.new_content_keys), (2, 2));
    let sintel = cp.title("sintel").unwrap();
    assert_eq!(sintel.name, "Sintel", "existing metadata kept");
    let r480 = sintel.rendition("480p-h264").unwrap();
    assert_eq!(r480.height, 480);
    let names: Vec<&str> = r480.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["init.mp4", "seg-00001.m4s", "seg-00002.m4s"]);
    assert_eq!(cp.title("cosmos").unwrap().renditions[0].height, 1080);
    let bad_listing = r#"[{"key":"../etc/passwd","size":1,"sha256":"x"}]"#;
    let err = cp
        .import_origin_listing_json(bad_listing, NOW)
        .unwrap_err()
        .to_string();
    assert!(err.contains("listing[0]") && err.contains("key"), "{err}");
    assert!(cp.import_origin_listing_json("{", NOW).is_err());

    // ---- users and player tokens
    cp.put_user("alice", "basic").unwrap();
    cp.put_user("bob", "premium").unwrap();
    assert!(matches!(
        cp.put_user("carol", "gold"),
        Err(Error::NotFound { what: "plan", .. })
    ));
    assert!(matches!(
        cp.put_user("a b", "basic"),
        Err(Error::InvalidId { .. })
    ));
    assert!(matches!(
        cp.issue_player_token("nobody", NOW),
        Err(Error::NotFound { .. })
    ));
    let alice = cp.issue_player_token("alice", NOW).unwrap();
    let bob = cp.issue_player_token("bob", NOW).unwrap();
    assert_eq!(
        cp.verify_player_token(&alice.token, NOW).unwrap().plan,
        "basic"
    );
    let forged = alice.token.replace(".basic.", ".premium.");
    assert!(matches!(
        cp.verify_player_token(&forged, NOW),
        Err(Error::PlayerToken(TokenRejection::BadSignature))
    ));
    assert!(matches!(
        cp.verify_player_token(&alice.token, NOW + DAY + 31),
        Err(Error::PlayerToken(TokenRejection::Expired))
    ));
    assert!(matches!(
        cp.verify_player_token("garbage", NOW),
        Err(Error::PlayerToken(TokenRejection::Malformed))
    ));
    // Entitlement by plan: alice (basic, 720p) never sees the 1080p/2160p renditions.
    let ent: Vec<u32> = cp
        .entitled_renditions(&alice.claims, "tears-of-steel")
        .unwrap()
        .iter()
        .map(|r| r.rendition.height)
        .collect();
    assert_eq!(ent, [720, 0]);
    assert_eq!(
        cp.entitled_renditions(&bob.claims, "tears-of-steel")
            .unwrap()
            .len(),
        4
    );

    // ---- ClearKey licenses
    let k2160 = cp
        .content_key_id(&rid("tears-of-steel/2160p-hevc"), NOW)
        .unwrap();
    let k720 = cp
        .content_key_id(&rid("tears-of-steel/720p-h264"), NOW)
        .unwrap();
    let lic = cp
        .license(&alice.token, &license_body(&[k720, k2160]), NOW)
        .unwrap();
    assert_eq!(lic.response.keys.len(), 1, "only the 720p key for basic");
    assert_eq!(lic.response.keys[0].kid, k720.to_b64url());
    assert_eq!(lic.withheld, vec![k2160]);
    assert_eq!(lic.expires_at, NOW + 3600);
    let (_, clear) = cp
        .content_key_for_packager(&rid("tears-of-steel/720p-h264"), NOW)
        .unwrap();
    assert_eq!(lic.response.keys[0].k, URL_SAFE_NO_PAD.encode(clear));
    let json: serde_json::Value = serde_json::from_str(&lic.response.to_json()).unwrap();
    assert_eq!(json["type"], "temporary");
    assert_eq!(json["keys"][0]["kty"], "oct");
    let lic = cp
        .license(&bob.token, &license_body(&[k720, k2160]), NOW)
        .unwrap();
    assert_eq!(lic.response.keys.len(), 2, "premium gets both");
    let err = cp
        .license(&alice.token, &license_body(&[k2160]), NOW)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::License(LicenseError::NotEntitled { .. })
    ));
    assert_eq!(err.http_status(), 403);
    let unknown = control_plane::KeyId([0xAB; 16]);
    let err = cp
        .license(&alice.token, &license_body(&[k720, unknown]), NOW)
        .unwrap_err();
    assert_eq!(err.code(), "unknown_kid");
    assert_eq!(
        cp.license(&alice.token, b"{nope", NOW).unwrap_err().code(),
        "bad_license_request"
    );
    assert_eq!(
        cp.license(&forged, &license_body(&[k720]), NOW)
            .unwrap_err()
            .http_status(),
        401
    );

    // ---- revocation
    let claims = cp.revoke_player_token(&alice.token, NOW).unwrap();
    assert_eq!(claims.user, "alice");
    assert!(matches!(
        cp.verify_player_token(&alice.token, NOW),
        Err(Error::PlayerToken(TokenRejection::Revoked))
    ));
    assert!(
        cp.license(&alice.token, &license_body(&[k720]), NOW)
            .is_err()
    );
    assert!(
        cp.revoke_player_token(&forged, NOW).is_err(),
        "a forged token cannot be revoked"
    );
    assert!(
        cp.verify_player_token(&bob.token, NOW).is_ok(),
        "other tokens unaffected"
    );

    // ---- URL-signing keys and rotation
    let keys1 = cp.signing_keys().unwrap();
    assert_eq!(keys1.len(), 1);
    let obj = "tears-of-steel/720p-h264/seg-00001.m4s";
    let url1 = sign_url(&keys1, obj);
    let kid2 = cp.rotate_signing_key(NOW).unwrap();
    let keys2 = cp.signing_keys().unwrap();
    assert_eq!(keys2.len(), 2);
    assert_eq!(keys2.newest().unwrap().kid, kid2);
    assert_eq!(
        verify_url(&keys2, &url1, obj),
        Ok(()),
        "old kid still verifies"
    );
    let url2 = sign_url(&keys2, obj);
    assert!(url2.contains(&format!(".{kid2}.")));
    let file = KeySet::from_toml(&cp.signing_key_file().unwrap()).unwrap();
    assert_eq!(
        verify_url(&file, &url1, obj),
        Ok(()),
        "the appliance key file verifies too"
    );
    cp.rotate_signing_key(NOW).unwrap();
    cp.rotate_signing_key(NOW).unwrap(); // max-live-keys = 3: the first key retires
    let keys4 = cp.signing_keys().unwrap();
    assert_eq!(keys4.len(), 3);
    assert_eq!(verify_url(&keys4, &url1, obj), Err(TokenError::UnknownKid));
    assert_eq!(verify_url(&keys4, &url2, obj), Ok(()));
    assert!(
        cp.retire_signing_key("k0000000001", NOW).is_err(),
        "already retired"
    );

    // ---- appliances
    let tok = cp.register_appliance("oca-isp1.01").unwrap();
    assert_eq!(cp.verify_appliance_token(&tok).unwrap(), "oca-isp1.01");
    let wrong = format!("{}x", &tok[..tok.len() - 1]);
    assert!(matches!(
        cp.verify_appliance_token(&wrong),
        Err(Error::ApplianceToken)
    ));
    assert!(matches!(
        cp.verify_appliance_token("oa1.ghost.abc"),
        Err(Error::ApplianceToken)
    ));
    assert!(matches!(
        cp.register_appliance("bad id"),
        Err(Error::InvalidId { .. })
    ));

    // ---- views → recommendations
    let mut events = Vec::new();
    for u in 0..6 {
        let user = format!("viewer{u}");
        events.push(ViewEvent {
            at: NOW - 2 * DAY + u,
            user: user.clone(),
            rendition: rid("tears-of-steel/720p-h264"),
            region: "NL".into(),
        });
        events.push(ViewEvent {
            at: NOW - DAY + u,
            user,
            rendition: rid("big-buck-bunny/720p-h264"),
            region: "NL".into(),
        });
    }
    events.push(ViewEvent {
        at: NOW - 3600,
        user: "bob".into(),
        rendition: rid("tears-of-steel/1080p-h264"),
        region: "NL".into(),
    });
    cp.record_views(&events).unwrap();
    let bad = ViewEvent {
        at: NOW,
        user: "not a user".into(),
        rendition: rid("sintel/720p-h264"),
        region: "NL".into(),
    };
    assert!(matches!(
        cp.record_views(&[bad]),
        Err(Error::InvalidId { .. })
    ));
    let recs = cp.recommendations("bob", "NL", NOW).unwrap();
    let byw = recs.row(RowKind::BecauseYouWatched).unwrap();
    assert_eq!(byw.seed.as_deref(), Some("tears-of-steel"));
    assert_eq!(byw.titles[0], "big-buck-bunny");
    let fresh = cp.recommendations("newcomer", "NL", NOW).unwrap();
    assert!(fresh.row(RowKind::TopInRegion).unwrap().titles.len() >= 2);
    assert!(!fresh.row(RowKind::ForYou).unwrap().titles.is_empty());
    // Sintel launches 2026-12-01: not recommended before.
    assert!(
        !fresh
            .rows
            .iter()
            .any(|r| r.titles.iter().any(|t| t == "sintel"))
    );

    // ---- forecast: tomorrow's demand, exposure counted
    let fc = cp.forecast(NOW).unwrap();
    let tos720 = fc
        .iter()
        .find(|f| f.rendition.as_str() == "tears-of-steel/720p-h264" && f.region == "NL")
        .unwrap();
    assert!(tos720.views > 0.0);

    // ---- metrics
    let mut reg = prometheus_client::registry::Registry::default();
    cp.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("control_plane_licenses_total{outcome=\"issued\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("control_plane_licenses_total{outcome=\"not_entitled\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("control_plane_player_tokens_verified_total{outcome=\"revoked\"}"),
        "{text}"
    );
    assert!(
        text.contains("control_plane_view_events_total 13"),
        "{text}"
    );

    // ---- reopen: migrations idempotent, data kept
    let kid2160 = k2160;
    drop(cp);
    let cp = ControlPlane::open(&cfg).unwrap();
    assert_eq!(cp.schema_version().unwrap(), 1);
    assert_eq!(cp.titles().unwrap().len(), 4);
    assert_eq!(
        cp.content_key_id(&rid("tears-of-steel/2160p-hevc"), NOW)
            .unwrap(),
        kid2160
    );
    assert!(matches!(
        cp.verify_player_token(&alice.token, NOW),
        Err(Error::PlayerToken(TokenRejection::Revoked))
    ));
    assert!(
        cp.verify_player_token(&bob.token, NOW).is_ok(),
        "player secret kept"
    );
    assert_eq!(verify_url(&cp.signing_keys().unwrap(), &url2, obj), Ok(()));
    assert_eq!(
        cp.license(&bob.token, &license_body(&[k720]), NOW)
            .unwrap()
            .response
            .keys
            .len(),
        1
    );
    drop(cp);

    // ---- a wrong or missing KEK is refused, never a panic
    let wrong = Kek::from_bytes(&[9u8; 32]).unwrap();
    assert!(matches!(
        ControlPlane::open_with_kek(&cfg, wrong),
        Err(Error::WrongKek)
    ));
    std::fs::write(dir.path().join("kek"), "short").unwrap();
    assert!(matches!(ControlPlane::open(&cfg), Err(Error::Kek(_))));
    let mut env_cfg = cfg.clone();
    env_cfg.kek.key_file = None;
    env_cfg.kek.key_env = "OCA_CP_TEST_KEK_SURELY_UNSET".into();
    let err = ControlPlane::open(&env_cfg).unwrap_err().to_string();
    assert!(err.contains("OCA_CP_TEST_KEK_SURELY_UNSET"), "{err}");
}

#[test]
fn forecast_gives_a_launch_prior_and_follows_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cp = ControlPlane::open_with_kek(&cfg, Kek::from_bytes(&[1u8; 32]).unwrap()).unwrap();
    cp.import_catalog_toml(CATALOG, NOW).unwrap();
    // The day before Sintel's launch (2026-12-01T00:00Z), at noon.
    let now = 1_796_083_200 - 12 * 3600;
    let mut events = Vec::new();
    for d in 1..=14u64 {
        let day_start = (now / DAY - d) * DAY;
        for i in 0..10 {
            events.push(ViewEvent {
                at: day_start + i * 60,
                user: format!("u{i}"),
                rendition: rid("tears-of-steel/720p-h264"),
                region: "NL".into(),
            });
        }
        for i in 0..4 {
            events.push(ViewEvent {
                at: day_start + i * 60,
                user: format!("v{i}"),
                rendition: rid("big-buck-bunny/1080p-h264"),
                region: "NL".into(),
            });
        }
    }
    cp.record_views(&events).unwrap();
    let fc = cp.forecast(now).unwrap();
    let get = |r: &str| {
        fc.iter()
            .find(|f| f.rendition.as_str() == r && f.region == "NL")
            .map_or(0.0, |f| f.views)
    };
    assert!(
        (get("tears-of-steel/720p-h264") - 10.0).abs() < 1e-6,
        "{fc:?}"
    );
    assert!(
        (get("big-buck-bunny/1080p-h264") - 4.0).abs() < 1e-6,
        "{fc:?}"
    );
    // Sintel launches tomorrow: its renditions get a prior though nobody watched it yet.
    let s1080 = get("sintel/1080p-h264");
    let s720 = get("sintel/720p-h264");
    assert!(s1080 > 0.0 && s720 > 0.0, "{fc:?}");
    // Spread by the region's mix: 720p-h264 is watched more than 1080p-h264 in NL.
    assert!(s720 > s1080, "{s720} vs {s1080}");
    // Recommendation exposure raises tomorrow's forecast of what is shown.
    for i in 0..50 {
        cp.recommendations(&format!("new{i}"), "NL", now).unwrap();
    }
    let after = cp.forecast(now).unwrap();
    let tos = after
        .iter()
        .find(|f| f.rendition.as_str() == "tears-of-steel/720p-h264" && f.region == "NL")
        .unwrap();
    assert!(
        (tos.views - (10.0 + 0.02 * 50.0)).abs() < 1e-6,
        "{}",
        tos.views
    );
}

#[test]
fn shared_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cp = std::sync::Arc::new(
        ControlPlane::open_with_kek(&cfg, Kek::from_bytes(&[2u8; 32]).unwrap()).unwrap(),
    );
    cp.import_catalog_toml(CATALOG, NOW).unwrap();
    cp.put_user("alice", "standard").unwrap();
    let token = cp.issue_player_token("alice", NOW).unwrap().token;
    let yesterday = (NOW / DAY - 1) * DAY;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let cp = cp.clone();
            let token = token.clone();
            s.spawn(move || {
                for i in 0..25u64 {
                    assert!(cp.verify_player_token(&token, NOW).is_ok());
                    cp.record_views(&[ViewEvent {
                        at: yesterday + t * 100 + i,
                        user: format!("t{t}"),
                        rendition: rid("sintel/720p-h264"),
                        region: "NL".into(),
                    }])
                    .unwrap();
                }
            });
        }
    });
    // One day of history: tomorrow's forecast is exactly the 100 views recorded.
    let fc = cp.forecast(NOW).unwrap();
    assert_eq!(fc.len(), 1);
    assert!((fc[0].views - 100.0).abs() < 1e-9, "{fc:?}");
}
