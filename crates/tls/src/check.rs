//! Whether a set can be used, decided before a process fails a handshake with it: the files
//! parse, the key belongs to the certificate, the certificate chains to the bundle and is valid
//! now, for the right usage and names. Pure (the time is an input).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{ServerName, UnixTime};

use crate::config::{provider, roots};
use crate::material::{Material, Problem};

/// What a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A cluster member (PD, TiKV): it serves under each of `names` and dials its peers, so it
    /// needs both server and client authentication.
    Peer {
        /// DNS names (or IP addresses) others reach it at.
        names: Vec<String>,
    },
    /// A client (the operator, an application): client authentication.
    Client,
}

/// What a usable certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// notAfter of the certificate, seconds since the Unix epoch.
    pub not_after: Option<i64>,
}

/// Checks `material` for `usage` at time `now`.
pub fn check(material: &Material, usage: &Usage, now: UnixTime) -> Result<Summary, Problem> {
    let parsed = material.parse()?;
    // The key matches the certificate (a config with a foreign key fails every handshake).
    crate::config::client(&parsed, &[])?;
    let roots = roots(&parsed)?;
    let (leaf, intermediates) = parsed
        .chain
        .split_first()
        .ok_or(Problem::NoCertificate(crate::material::CERT))?;
    let rejected = |e: rustls::Error| Problem::Rejected(describe(e));
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| Problem::BadCa(e.to_string()))?
        .verify_client_cert(leaf, intermediates, now)
        .map_err(rejected)?;
    if let Usage::Peer { names } = usage {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| Problem::BadCa(e.to_string()))?;
        for name in names {
            let server = ServerName::try_from(name.as_str())
                .map_err(|e| Problem::Rejected(format!("cannot be checked for {name:?}: {e}")))?
                .to_owned();
            verifier
                .verify_server_cert(leaf, intermediates, &server, &[], now)
                .map_err(rejected)?;
        }
    }
    Ok(Summary {
        not_after: crate::validity::validity(leaf).map(|(_, after)| after),
    })
}

/// rustls' words for a rejected certificate, said of `tls.crt`.
fn describe(e: rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "is not issued by a CA in ca.crt".to_string()
        }
        rustls::Error::InvalidCertificate(c) => format!("is not valid: {c}"),
        other => format!("is not valid: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::Problem;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair,
    };

    struct Ca {
        cert: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap().pem();
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, names: &[&str], eku: Vec<Eku>, days: (i64, i64)) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = eku;
        let now = rcgen::date_time_ymd(2030, 6, 1);
        p.not_before = now + std::time::Duration::from_secs((days.0 * 86_400) as u64);
        p.not_after = now + std::time::Duration::from_secs((days.1 * 86_400) as u64);
        let key = KeyPair::generate().unwrap();
        (
            p.signed_by(&key, &ca.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    /// 2030-06-01 plus `days`.
    fn at(days: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_906_502_400 + days * 86_400,
        ))
    }

    fn material(ca: &str, (cert, key): &(String, String)) -> Material {
        Material {
            ca: ca.as_bytes().to_vec(),
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
        }
    }

    fn peer(names: &[&str]) -> Usage {
        Usage::Peer {
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn table() {
        let a = ca("a");
        let b = ca("b");
        let both = vec![Eku::ServerAuth, Eku::ClientAuth];
        let pd_names = ["*.pd-peer.ns.svc", "pd.ns.svc"];
        let good = leaf(&a, &pd_names, both.clone(), (0, 90));
        let bundle = format!("{}{}", b.cert, a.cert);
        let client_only = leaf(&a, &[], vec![Eku::ClientAuth], (0, 90));
        let server_only = leaf(&a, &pd_names, vec![Eku::ServerAuth], (0, 90));
        let other_key = leaf(&a, &pd_names, both.clone(), (0, 90)).1;
        let member = peer(&["pd-0.pd-peer.ns.svc", "pd.ns.svc"]);
        type Case<'a> = (&'a str, Material, Usage, u64, Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            (
                "a peer certificate",
                material(&a.cert, &good),
                member.clone(),
                1,
                Ok(()),
            ),
            (
                "a bundle of old and new CA trusts both",
                material(&bundle, &good),
                member.clone(),
                1,
                Ok(()),
            ),
            (
                "a client certificate for a client",
                material(&a.cert, &client_only),
                Usage::Client,
                1,
                Ok(()),
            ),
            (
                "a peer certificate may act as a client",
                material(&a.cert, &good),
                Usage::Client,
                1,
                Ok(()),
            ),
            (
                "another CA",
                material(&b.cert, &good),
                member.clone(),
                1,
                Err("tls.crt is not issued by a CA in ca.crt"),
            ),
            (
                "expired",
                material(&a.cert, &good),
                member.clone(),
                91,
                Err("tls.crt is not valid: certificate expired"),
            ),
            (
                "not valid yet",
                material(&a.cert, &leaf(&a, &pd_names, both.clone(), (2, 90))),
                member.clone(),
                1,
                Err("tls.crt is not valid: certificate not valid yet"),
            ),
            (
                "wrong name",
                material(&a.cert, &good),
                peer(&["tikv-0.tikv-peer.ns.svc"]),
                1,
                Err("tls.crt is not valid: certificate not valid for name"),
            ),
            (
                "no client usage",
                material(&a.cert, &server_only),
                member.clone(),
                1,
                Err("tls.crt is not valid"),
            ),
            (
                "no server usage",
                material(&a.cert, &client_only),
                member.clone(),
                1,
                Err("tls.crt is not valid"),
            ),
            (
                "a key of another certificate",
                material(&a.cert, &(good.0.clone(), other_key)),
                member.clone(),
                1,
                Err("tls.key is not the key of the certificate in tls.crt"),
            ),
            (
                "no key",
                material(&a.cert, &(good.0.clone(), String::new())),
                member.clone(),
                1,
                Err("tls.key holds no usable private key"),
            ),
            (
                "a key where the certificate belongs",
                material(&a.cert, &(good.1.clone(), good.1.clone())),
                member.clone(),
                1,
                Err("tls.crt holds no certificate"),
            ),
            (
                "a CA bundle of garbage",
                material("junk", &good),
                member.clone(),
                1,
                Err("ca.crt holds no certificate"),
            ),
        ];
        for (what, m, usage, day, want) in cases {
            let got = check(&m, &usage, at(day))
                .map(drop)
                .map_err(|e| e.to_string());
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(prefix)) if e.starts_with(prefix) => {}
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        let summary = check(&material(&a.cert, &good), &member, at(1)).unwrap();
        assert_eq!(summary.not_after, Some(1_906_502_400 + 90 * 86_400));
        assert_eq!(
            check(
                &Material {
                    ca: Vec::new(),
                    ..material("", &good)
                },
                &Usage::Client,
                at(1)
            ),
            Err(Problem::Missing("ca.crt"))
        );
    }
}
