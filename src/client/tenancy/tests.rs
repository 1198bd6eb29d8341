//! [`Tenancy`] without a socket: a config from text, a topology whose
//! nodes carry regions, and pools that are never asked for a server.

use super::*;
use crate::config::Loaded;
use crate::pool::{PoolKey, Pools};
use crate::server::ServerTarget;

pub(in crate::client) const CONFIG: &str = r#"
[proxy]
listen = "127.0.0.1:0"
pool_mode = "transaction"
auth_type = "trust"
[users.app]
password = "app"
[databases.app]
primary = "127.0.0.1:1"
region = "eu-west-1"
replicas = [
  { addr = "127.0.0.1:2", region = "eu-west-1" },
  { addr = "127.0.0.1:3", region = "us-east-1" },
]
[databases.app.routing]
monitor_user = "app"
[databases.app.residency]
policy = "strict"
tenant_from = "set"
[tenants]
acme = ["eu-west-1"]
globex = ["us-east-1"]
"#;

pub(in crate::client) fn setup(config: &str) -> (Loaded, Vec<Arc<NodePools>>) {
    let loaded = match crate::config::from_str(config, std::path::Path::new(".")) {
        Ok(l) => l,
        Err(problems) => panic!("{problems:?}"),
    };
    let topology = Topology::new(
        "app",
        vec![
            ("127.0.0.1:1".into(), 1, Some("eu-west-1".into())),
            ("127.0.0.1:2".into(), 1, Some("eu-west-1".into())),
            ("127.0.0.1:3".into(), 1, Some("us-east-1".into())),
        ],
    );
    let target = ServerTarget {
        addr: "127.0.0.1:1".into(),
        dbname: "app".into(),
        user: "app".into(),
        secret: None,
        allowed_auth: loaded.allowed_server_auth(),
    };
    let pools = Pools::default();
    let nodes = pools.node_pools(&topology, &loaded, &PoolKey::new("app", "app"), &target);
    (loaded, nodes.into_iter().collect())
}

#[test]
fn strict_plans_use_only_the_tenants_nodes() {
    let (loaded, members) = setup(CONFIG);
    let audit = Audit::default();
    let mut t = Tenancy::new("app", Some("acme".into()));
    let plan = t.plan(&loaded, &members, &audit);
    let Ok(plan) = plan else {
        panic!("{plan:?}");
    };
    assert_eq!(plan.mask, [0, 1].into_iter().collect());
    assert!(!plan.spill, "strict never spills");
    assert!(t.allows(0, 1) && !t.allows(0, 2));
    assert!(t.set(&loaded, Some("globex".into())).is_ok());
    let Ok(plan) = t.plan(&loaded, &members, &audit) else {
        panic!("globex is in the map");
    };
    assert_eq!(plan.mask, [2].into_iter().collect());
}

#[test]
fn a_missing_or_unknown_tenant_is_refused() {
    let (loaded, members) = setup(CONFIG);
    let audit = Audit::default();
    let mut none = Tenancy::new("app", None);
    let e = none.plan(&loaded, &members, &audit).err();
    assert_eq!(e.map(|e| e.sqlstate().to_owned()).as_deref(), Some("RZ003"));
    let mut unknown = Tenancy::new("app", Some("initech".into()));
    let e = unknown.plan(&loaded, &members, &audit).err();
    assert_eq!(e.map(|e| e.sqlstate().to_owned()).as_deref(), Some("RZ002"));
}

#[test]
fn the_tenant_is_fixed_once_a_query_ran() {
    let (loaded, members) = setup(CONFIG);
    let audit = Audit::default();
    let mut t = Tenancy::new("app", Some("acme".into()));
    assert!(t.plan(&loaded, &members, &audit).is_ok());
    t.mark_used();
    let e = t.set(&loaded, Some("globex".into())).err();
    assert_eq!(e.map(|e| e.sqlstate().to_owned()).as_deref(), Some("RZ004"));
    assert!(
        t.set(&loaded, Some("acme".into())).is_ok(),
        "the same tenant again"
    );
    // Where the tenant comes from the user name, SET cannot change it.
    let by_user = CONFIG.replace("tenant_from = \"set\"", "tenant_from = \"user\"");
    let (loaded, _) = setup(&by_user);
    let mut fixed = Tenancy::new("app", Some("app".into()));
    let e = fixed.set(&loaded, Some("acme".into())).err();
    assert_eq!(e.map(|e| e.sqlstate().to_owned()).as_deref(), Some("RZ004"));
}
