//! A throwaway certificate authority and a server certificate for `127.0.0.1`/`localhost`, made
//! with the `openssl` command line (Debian's `openssl` package; scripts/bootstrap.sh installs it),
//! so that redis-server can serve `rediss://` the way ElastiCache Serverless does and the client
//! under test verifies the chain and the name for real (no "insecure" mode anywhere).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CA, and a key and certificate it signed for `IP:127.0.0.1, DNS:localhost`; the directory
/// is removed on drop.
pub struct TlsFiles {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl on PATH (scripts/bootstrap.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TlsFiles {
    pub fn generate() -> Self {
        Self::generate_for("IP:127.0.0.1,DNS:localhost")
    }

    /// A CA and a server certificate for the `subjectAltName` list `san` (`DNS:a.test,DNS:b.test`).
    pub fn generate_for(san: &str) -> Self {
        let dir = crate::redis_server::temp_dir("tls");
        // P-256 keys: quick to make, and what rustls verifies without extra features.
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=testkit local CA"]);
        // webpki accepts only a v3 CA certificate that says it is one.
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&dir, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        openssl(&dir, &csr);
        // clientAuth too: cluster nodes present this certificate to each other on the TLS bus.
        let ext = format!(
            "subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        );
        std::fs::write(dir.join("server.ext"), ext).expect("write server.ext");
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Self { dir }
    }

    /// The CA certificate (PEM): what a client must trust (`REDIS_CA_BUNDLE`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// redis-server arguments that serve TLS only on `port` (no plaintext port, as in
    /// ElastiCache Serverless), without asking clients for certificates.
    pub(crate) fn server_args(&self, port: u16) -> Vec<String> {
        let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(self.cert()),
            "--tls-key-file".into(),
            path(self.key()),
            "--tls-ca-cert-file".into(),
            path(self.ca()),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// redis-cli arguments for a TLS connection that verifies the server against the CA.
    pub(crate) fn cli_args(&self) -> Vec<String> {
        vec!["--tls".into(), "--cacert".into(), self.ca().to_str().expect("utf-8 path").to_owned()]
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
