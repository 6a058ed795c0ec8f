//! The tenant pool's connection policy against a real server, with connections held by
//! the test itself so every step is deterministic: first connections before anyone's
//! extras (the reserve), extras closed first, shared reads joining a busy connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tenant::pool::{Budget, PIPELINE_DEPTH, PoolSettings, Relief, TenantPool, build_pool};

use crate::helpers::spawn_app;

fn pool(app: &crate::helpers::TestApp, budget: &Arc<Budget>, relief: Relief) -> TenantPool {
    let endpoint = app.state.owner.endpoint();
    build_pool(
        vec![endpoint.config().clone()],
        endpoint.tls().clone(),
        PoolSettings {
            max_size: 10,
            wait: Duration::from_secs(30),
            connect: Duration::from_secs(30),
        },
        Arc::clone(budget),
        relief,
        None,
    )
    .expect("pool")
}

#[tokio::test]
async fn a_burst_cannot_take_the_reserve_kept_for_first_connections() {
    let app = spawn_app().await;
    // Ten connections, one of them kept for first connections.
    let budget = Budget::new(10);
    let reliefs = Arc::new(AtomicUsize::new(0));
    let counted: Relief = {
        let reliefs = Arc::clone(&reliefs);
        Arc::new(move || {
            reliefs.fetch_add(1, Ordering::SeqCst);
            false
        })
    };
    let busy = pool(&app, &budget, Arc::clone(&counted));
    let quiet = pool(&app, &budget, counted);

    // A burst on one tenant grows it to the budget less the reserve, and no further.
    let mut held = Vec::new();
    for _ in 0..9 {
        held.push(busy.get().await.expect("from free budget"));
    }
    assert_eq!(budget.in_use(), 9);
    let tenth = tokio::spawn({
        let busy = busy.clone();
        async move { busy.get().await.map(|_| ()) }
    });
    // While it waits for one of its own, a tenant with none is served from the reserve
    // at once, without closing anyone's connection.
    let first = quiet.get().await.expect("the reserve");
    assert_eq!(budget.in_use(), 10);
    assert_eq!(busy.status().size, 9, "the burst did not take the reserve");
    assert_eq!(reliefs.load(Ordering::SeqCst), 0, "no relief was needed");
    assert!(
        !tenth.is_finished(),
        "the burst's tenth request waits for its own"
    );
    // One of its own comes back: the waiting request is served by it.
    drop(held.pop());
    tenth
        .await
        .expect("task")
        .expect("served by its own connection");
    assert_eq!(busy.status().size, 9);
    drop(first);
}

#[tokio::test]
async fn extra_connections_close_after_their_idle_time_and_the_first_stays() {
    let app = spawn_app().await;
    let budget = Budget::new(20);
    let pool = pool(&app, &budget, Arc::new(|| false));
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.get()))
        .await
        .into_iter()
        .map(|c| c.expect("connection"))
        .collect();
    assert_eq!(pool.status().size, 4);
    drop(held);
    // Not idle long enough yet: nothing closes.
    assert_eq!(pool.sweep(Duration::from_secs(3600)), 0);
    assert_eq!(pool.status().size, 4);
    // Idle long enough: the extras close, the tenant keeps one.
    assert_eq!(pool.sweep(Duration::ZERO), 3);
    assert_eq!(pool.status().size, 1);
    assert_eq!(budget.in_use(), 1, "their budget is back");
    assert_eq!(pool.sweep(Duration::ZERO), 0, "the last one is kept");
    // One in use counts as the one kept: an idle extra beside it closes.
    let in_use = pool.get().await.expect("connection");
    let extra = pool.get().await.expect("connection");
    drop(extra);
    assert_eq!(pool.sweep(Duration::ZERO), 1);
    assert_eq!(pool.status().size, 1);
    drop(in_use);
}

/// Waits (bounded) until `pool` has a request waiting for a connection of its own.
async fn until_exclusive_waiting(pool: &TenantPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pool.exclusive_waiting() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no exclusive waiter registered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query")
        .get(0)
}

#[tokio::test]
async fn shared_reads_join_the_busy_connection_until_someone_needs_it_alone() {
    let app = spawn_app().await;
    // A budget of one: the tenant can never have a second connection.
    let budget = Budget::new(1);
    let pool = pool(&app, &budget, Arc::new(|| false));

    // The first read opens the connection; the second cannot grow the tenant and
    // shares it, its statement pipelined on the same session.
    let first = pool.shared().await.expect("first read");
    let second = tokio::time::timeout(Duration::from_secs(30), pool.shared())
        .await
        .expect("a read joins the busy connection instead of waiting")
        .expect("second read");
    assert_eq!(pool.status().size, 1);
    assert_eq!(budget.in_use(), 1);
    let (a, b) = tokio::join!(backend_pid(&first), backend_pid(&second));
    assert_eq!(a, b, "both reads ran on the one connection");

    // A request that needs the connection alone (a transaction) waits, and from then on
    // reads stop joining, so the connection comes back to the pool.
    let exclusive = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut conn = pool.get().await.expect("exclusive connection");
            let tx = conn.transaction().await.expect("begin");
            tx.execute("SET LOCAL application_name = 'inside a transaction'", &[])
                .await
                .expect("set local");
            let pid: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .expect("pid")
                .get(0);
            tx.commit().await.expect("commit");
            pid
        }
    });
    until_exclusive_waiting(&pool).await;
    let third = tokio::spawn({
        let pool = pool.clone();
        async move {
            let conn = pool.shared().await.expect("third read");
            conn.query_one("SELECT current_setting('application_name')", &[])
                .await
                .expect("query")
                .get::<_, String>(0)
        }
    });
    assert!(!exclusive.is_finished(), "the connection is still shared");
    drop(first);
    drop(second);
    let pid = exclusive.await.expect("task");
    assert_eq!(
        pid, a,
        "the exclusive request got the tenant's one connection"
    );
    // The read that came while the transaction waited ran after it, outside it.
    let seen = third.await.expect("task");
    assert_ne!(seen, "inside a transaction");
    assert_eq!(pool.status().size, 1);
    assert_eq!(budget.in_use(), 1);
}

#[tokio::test]
async fn reads_share_one_connection_up_to_the_pipeline_depth_then_spread() {
    let app = spawn_app().await;
    let budget = Budget::new(20);
    let pool = pool(&app, &budget, Arc::new(|| false));
    // Reads held at once share one connection while its queue has room, even though the
    // tenant could open more.
    let mut held = Vec::new();
    for _ in 0..PIPELINE_DEPTH {
        held.push(pool.shared().await.expect("read"));
    }
    assert_eq!(pool.status().size, 1, "one connection for the whole depth");
    let pids = futures::future::join_all(held.iter().map(|c| backend_pid(c))).await;
    assert!(pids.iter().all(|pid| *pid == pids[0]));
    // One more would queue too deep: it takes a connection of its own, which then serves
    // the reads that follow.
    let next = pool.shared().await.expect("read");
    assert_eq!(pool.status().size, 2);
    let other = backend_pid(&next).await;
    assert_ne!(other, pids[0]);
    let after = pool.shared().await.expect("read");
    assert_eq!(backend_pid(&after).await, other);
    // Once they are done, both connections are back in the pool.
    drop((held, next, after));
    assert_eq!(pool.status().available, 2);
}

#[tokio::test]
async fn a_burst_of_reads_on_a_cold_tenant_opens_one_connection() {
    let app = spawn_app().await;
    let budget = Budget::new(20);
    let pool = pool(&app, &budget, Arc::new(|| false));
    // Reads arriving together while the tenant has no connection: one of them opens it,
    // the others wait for it and join, rather than each opening one of their own.
    let held: Vec<_> = futures::future::join_all((0..20).map(|_| pool.shared()))
        .await
        .into_iter()
        .map(|c| c.expect("read"))
        .collect();
    assert_eq!(pool.status().size, 1);
    assert_eq!(budget.in_use(), 1);
    drop(held);
}

#[tokio::test]
async fn a_request_waiting_on_a_full_pool_stops_reads_joining_so_it_is_served() {
    let app = spawn_app().await;
    let budget = Budget::new(20);
    let pool = pool(&app, &budget, Arc::new(|| false));
    // The pool at its size (10): nine connections held alone, one serving reads.
    let mut held = Vec::new();
    for _ in 0..9 {
        held.push(pool.get().await.expect("connection"));
    }
    let read = pool.shared().await.expect("read");
    assert_eq!(pool.status().size, 10);
    // A request for a connection of its own now waits on the pool itself; it counts as
    // waiting, so the busy connection takes no more reads and can come back.
    let exclusive = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|_| ()) }
    });
    until_exclusive_waiting(&pool).await;
    let late = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shared().await.map(|_| ()) }
    });
    drop(read);
    // Served by the connection the reads gave back, while the nine are still held.
    exclusive
        .await
        .expect("task")
        .expect("served by the returned connection");
    assert_eq!(pool.exclusive_waiting(), 0);
    drop(held);
    late.await.expect("task").expect("the late read is served");
}
