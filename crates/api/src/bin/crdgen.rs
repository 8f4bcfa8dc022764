//! Writes the CRD YAML of every kind into the CRD chart (or to `--out DIR`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (Some("--out"), Some(dir)) => PathBuf::from(dir),
        (None, _) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(api::CRD_CHART_TEMPLATES),
        _ => return Err("usage: crdgen [--out DIR]".into()),
    };
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in api::crd_files()? {
        std::fs::write(dir.join(&file), yaml)?;
        println!("wrote {}", dir.join(file).display());
    }
    Ok(())
}
