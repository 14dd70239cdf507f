//! `provision_with`: a template parameter given a value reaches every place the template refers
//! to it, as CloudFormation resolves it: the functions' variables and the uploads bucket's CORS
//! rules (both from `AllowedOrigins`), where the default would otherwise stand.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_value_reaches_function_variables_and_bucket_cors() {
    let origin = "https://app.example.test:8443";
    let provisioned =
        tokio::task::spawn_blocking(move || testkit::provision_with(&[("AllowedOrigins", origin)], &[])).await.unwrap();
    for function in ["auth-refresh", "upload-presign"] {
        assert_eq!(provisioned.env(function)["ALLOWED_ORIGINS"], origin, "{function}");
    }
    let aws = testkit::aws_clients().await;
    let cors = aws.s3().get_bucket_cors().bucket(provisioned.name("UploadsBucket")).send().await.expect("bucket CORS");
    let origins: Vec<&str> = cors.cors_rules().iter().flat_map(|r| r.allowed_origins()).map(String::as_str).collect();
    assert_eq!(origins, [origin]);
}

#[test]
fn without_parameters_the_template_defaults_stand() {
    let provisioned = testkit::provision(&[]);
    assert_eq!(provisioned.env("upload-presign")["ALLOWED_ORIGINS"], "http://localhost:5173");
}
