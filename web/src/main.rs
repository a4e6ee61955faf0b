//! The dashboard's entry point: mounts [`quota_web::App`] on the page's body.

#[cfg(target_arch = "wasm32")]
fn main() {
    leptos::mount::mount_to_body(quota_web::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "quota-web runs in the browser: `cargo xtask serve`, then open http://127.0.0.1:8080"
    );
    std::process::exit(2);
}
