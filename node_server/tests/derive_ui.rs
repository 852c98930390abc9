//! Compile errors for misuse of the derive macros, with their spans (trybuild snapshots in
//! `tests/ui`; regenerate with `TRYBUILD=overwrite` and review them).

#[test]
fn derive_misuse_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
