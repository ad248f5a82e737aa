//! Bindings generated from `sdk/wit/`. Authors use the re-exports at the crate root; this
//! module is public for the rare plugin that needs a generated type the root does not name.

#[cfg(feature = "source")]
wit_bindgen::generate!({
    path: "wit",
    // Every source exports `change-stream`: a source that does not follow its system
    // leaves `Source::follow` and `Source::apply` at their defaults, which say so.
    world: "following-source-plugin",
    pub_export_macro: true,
    export_macro_name: "__export_source_world",
    default_bindings_module: "cairn_sdk::bindings",
    runtime_path: "cairn_sdk::__private::wit_bindgen::rt",
});

#[cfg(feature = "sink")]
wit_bindgen::generate!({
    path: "wit",
    world: "sink-plugin",
    pub_export_macro: true,
    export_macro_name: "__export_sink_world",
    default_bindings_module: "cairn_sdk::bindings",
    runtime_path: "cairn_sdk::__private::wit_bindgen::rt",
});
