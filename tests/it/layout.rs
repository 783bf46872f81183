//! The repository's promised layout: `static/` at the top level is the one
//! source of the bundled browser scripts, and the template (which
//! cargo-generate copies on its own, without the rest of the repository)
//! carries byte-identical copies.

use libtest_mimic::Trial;

pub fn tests() -> Vec<Trial> {
    crate::trials![needs_nothing => [the_template_ships_the_top_level_static_scripts]]
}

const SCRIPTS: [&str; 2] = ["eventsource.min.js", "reconnecting-eventsource.js"];

async fn the_template_ships_the_top_level_static_scripts() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in SCRIPTS {
        let source = std::fs::read(repo.join("static").join(script))
            .unwrap_or_else(|e| panic!("static/{script}: {e}"));
        let copy = std::fs::read(repo.join("template/static").join(script))
            .unwrap_or_else(|e| panic!("template/static/{script}: {e}"));
        assert!(
            source == copy,
            "template/static/{script} differs from static/{script}: copy it over (cp static/{script} template/static/)"
        );
    }
}
