//! Every YAML file under `deploy/` parses (with `<<` merge keys applied) and every TOML under
//! it is a config this suite loads.

use crate::{deploy_files, str_of, yaml_docs};

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files: Vec<String> = deploy_files()
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .collect();
    assert!(files.len() >= 9, "found only {files:?}");
    for file in &files {
        let docs = yaml_docs(file);
        assert!(!docs.is_empty(), "deploy/{file}: no document");
        for (i, doc) in docs.iter().enumerate() {
            assert!(doc.is_hash(), "deploy/{file} document {i}: not a mapping");
            if file.starts_with("k8s/") {
                for field in ["apiVersion", "kind"] {
                    str_of(&doc[field], &format!("deploy/{file} document {i}: {field}"));
                }
                if file != "k8s/kustomization.yaml" {
                    str_of(&doc["metadata"]["name"], &format!("deploy/{file}: name"));
                }
            }
        }
    }
}

#[test]
fn every_toml_under_deploy_is_known_to_this_test() {
    let tomls: Vec<String> = deploy_files()
        .into_iter()
        .filter(|f| f.ends_with(".toml"))
        .collect();
    // A new config under deploy/ must be loaded by a test here too.
    assert_eq!(tomls, ["compose/gateway.toml"]);
}
