//! Connecting with the secret RDS manages for a master password: `username` and `password`
//! only, the endpoint from the environment (as the template sets it).

use sluice_loader::RdsSecret;
use sluice_loader::config::Endpoint;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

#[tokio::test]
async fn a_username_and_password_secret_connects_with_the_endpoint_from_the_environment()
-> anyhow::Result<()> {
    let db = sluice_testkit::database().await?;
    let url: PgConnectOptions = db.url.parse()?;
    // The test database's password, if its URL has one (`scheme://user:password@host/…`).
    let userinfo = db
        .url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(u, _)| u);
    let password = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p);
    let secret = serde_json::json!({
        "username": url.get_username(),
        "password": password.unwrap_or_default(),
    });
    let secret = RdsSecret::parse(&secret.to_string())?;
    let endpoint = Endpoint {
        host: Some(url.get_host().to_owned()),
        port: Some(url.get_port()),
        name: url.get_database().map(str::to_owned),
    };
    let mut conn = secret.connect_options(&endpoint)?.connect().await?;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(Some(name.as_str()), url.get_database());
    Ok(())
}
