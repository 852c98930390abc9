//! The protocol without sockets: each test drives a [`Machine`] with inputs and checks the
//! actions it asks for and the tables it keeps.

use super::*;

fn atom(s: &str) -> Atom {
    Atom::new(s)
}

/// A pid of `node` (creation 1).
pub(in crate::global) fn pid(node: &str, id: u32) -> Pid {
    Pid {
        node: atom(node),
        id,
        serial: 0,
        creation: 1,
    }
}

fn name(s: &str) -> Term {
    Term::atom(s)
}

/// The lock id `{resource, requester}` of two atoms.
fn lid(resource: &str, requester: &str) -> LockId {
    LockId(name(resource), name(requester))
}

/// A peer's `resolved` with `ops` for us and no known nodes.
fn resolved(peer: &str, ops: Vec<Op>, my_tag: Term) -> Cast {
    Cast::Resolved(atom(peer), ops, Term::NIL, Term::NIL, Vec::new(), my_tag)
}

/// A peer's `init_connect` with its tag.
fn init_connect(peer: &str, tag: i64) -> Cast {
    Cast::InitConnect(
        VsnTag(VSN, Term::Int(tag)),
        atom(peer),
        LockerInfo(Term::NIL, Term::NIL, his_locker(peer)),
    )
}

/// The locker pid every test peer uses.
fn his_locker(peer: &str) -> Pid {
    pid(peer, 2)
}

struct Harness {
    m: Machine,
    me: String,
    now: u64,
    next_request: u64,
}

impl Harness {
    fn new(me: &str) -> Harness {
        Harness {
            m: Machine::new(Config {
                me: atom(me),
                gns: pid(me, 1),
                locker: pid(me, 2),
                registrar: pid(me, 3),
                incarnation: 1,
                seed: 7,
            }),
            me: me.to_owned(),
            now: 0,
            next_request: 0,
        }
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.now += 1;
        self.m.handle(input, self.now)
    }

    fn up(&mut self, node: &str) -> Vec<Action> {
        self.input(Input::NodeUp {
            node: atom(node),
            hidden: false,
        })
    }

    fn down(&mut self, node: &str) -> Vec<Action> {
        self.input(Input::NodeDown(atom(node)))
    }

    fn cast(&mut self, from: &str, cast: Cast) -> Vec<Action> {
        self.input(Input::Message {
            from: atom(from),
            msg: wire::cast(cast),
        })
    }

    /// A `gen_server` call from `caller`; returns the actions and the reply sent back.
    fn call(&mut self, caller: &Pid, call: Call) -> (Vec<Action>, Option<Term>) {
        let msg = GnsMsg::GenCall(From(caller.clone(), Term::Int(99)), call).encode();
        let actions = self.input(Input::Message {
            from: caller.node.clone(),
            msg,
        });
        let reply = actions.iter().find_map(|a| match a {
            Action::Send {
                to: Dest::Pid(p),
                msg,
            } if p == caller => match msg.as_tuple() {
                Some([Term::Int(99), reply]) => Some(reply.clone()),
                _ => None,
            },
            _ => None,
        });
        (actions, reply)
    }

    fn request(&mut self, request: Request) -> (RequestId, Vec<Action>) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        (id, self.input(Input::Request(id, request)))
    }

    fn register(&mut self, n: &str, p: &Pid) -> (RequestId, Vec<Action>) {
        self.request(Request::Register {
            name: name(n),
            pid: p.clone(),
            method: default_method(),
        })
    }

    /// Brings `peer` in sync with us, its locker going first (as an Erlang node's does),
    /// with `names` as its table; returns the actions of each step.
    fn sync(&mut self, peer: &str, names: Vec<NameItem>, ops: Vec<Op>) -> Vec<Vec<Action>> {
        let mut steps = vec![self.up(peer)];
        let my_tag = init_tag(&steps[0], peer).expect("init_connect sent");
        steps.push(self.cast(
            peer,
            Cast::InitConnect(
                VsnTag(VSN, Term::Int(1000)),
                atom(peer),
                LockerInfo(Term::atom("no_longer_a_pid"), Term::NIL, his_locker(peer)),
            ),
        ));
        let (actions, granted) = self.call(&his_locker(peer), Call::SetLock(self.conn_lock(peer)));
        assert_eq!(granted, Some(Term::atom("true")), "his locker locks us");
        steps.push(actions);
        steps.push(self.cast(
            peer,
            Cast::LockSet(his_locker(peer), true, Term::NIL, my_tag.clone()),
        ));
        steps.push(self.cast(
            peer,
            Cast::Exchange(atom(peer), names, Term::NIL, my_tag.clone()),
        ));
        steps.push(self.cast(peer, resolved(peer, ops, my_tag)));
        // His locker releases its half of the connection lock.
        let lock = self.conn_lock(peer);
        steps.push(self.call(&his_locker(peer), Call::DelLock(lock)).0);
        steps
    }

    /// `peer` comes up and sends its `init_connect`, then our locker's timer fires: returns
    /// our tag and our locker's `set_lock` call on the peer.
    fn our_locker_calls(&mut self, peer: &str) -> (Term, CallId) {
        let my_tag = init_tag(&self.up(peer), peer).expect("init_connect");
        self.cast(peer, init_connect(peer, 5));
        let Term::Int(tag) = my_tag else {
            panic!("an integer tag")
        };
        let actions = self.input(Input::Timer(Timer::Locker {
            node: atom(peer),
            tag,
        }));
        let (call, ..) = calls(&actions)[0].clone();
        (my_tag, call)
    }

    /// Whether `holder` gets the lock `{resource, requester}` here (a `set_lock` call).
    fn lock(&mut self, holder: &Pid, id: &LockId) -> bool {
        self.call(holder, Call::SetLock(id.clone())).1 == Some(Term::atom("true"))
    }

    fn conn_lock(&self, peer: &str) -> LockId {
        let mut lockers = [his_locker(peer), pid(&self.me, 2)];
        lockers.sort();
        LockId(
            Term::atom("global"),
            Term::list(lockers.into_iter().map(Term::Pid).collect::<Vec<_>>()),
        )
    }

    fn known(&self) -> Vec<String> {
        self.m
            .known()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect()
    }
}

/// The casts and messages sent to `node`'s name server.
fn to_gns(actions: &[Action], node: &str) -> Vec<GnsMsg> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to: Dest::Gns(n),
                msg,
            } if n.as_str() == node => Some(GnsMsg::decode(msg)),
            _ => None,
        })
        .collect()
}

fn init_tag(actions: &[Action], node: &str) -> Option<Term> {
    to_gns(actions, node).into_iter().find_map(|m| match m {
        GnsMsg::GenCast(Cast::InitConnect(VsnTag(_, tag), _, _)) => Some(tag),
        _ => None,
    })
}

fn calls(actions: &[Action]) -> Vec<(CallId, CallTo, Term)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Call { id, to, request } => Some((*id, to.clone(), request.clone())),
            _ => None,
        })
        .collect()
}

fn reply(actions: &[Action], to: RequestId) -> Option<Reply> {
    actions.iter().find_map(|a| match a {
        Action::Reply { to: t, reply } if *t == to => Some(reply.clone()),
        _ => None,
    })
}

fn resolved_ops(actions: &[Action], node: &str) -> Option<Vec<Op>> {
    to_gns(actions, node).into_iter().find_map(|m| match m {
        GnsMsg::GenCast(Cast::Resolved(_, ops, ..)) => Some(ops),
        _ => None,
    })
}

fn has(actions: &[Action], wanted: &Action) -> bool {
    actions.contains(wanted)
}

#[test]
fn a_free_name_registers_and_its_process_is_monitored() {
    let mut h = Harness::new("a@h");
    let p = pid("a@h", 10);
    let (id, actions) = h.register("n", &p);
    assert_eq!(reply(&actions, id), Some(Reply::Done(Ok(()))));
    assert!(has(&actions, &Action::Monitor(p.clone())));
    assert_eq!(h.m.whereis(&name("n")), Some(p.clone()));
    let (id, actions) = h.request(Request::Names);
    assert_eq!(
        reply(&actions, id),
        Some(Reply::Names(vec![(name("n"), p)]))
    );
    // The lock of the registration is released.
    assert!(h.lock(&pid("x@h", 5), &lid("global", "other")));
}

#[test]
fn a_taken_name_and_a_second_name_for_a_pid_are_refused() {
    let mut h = Harness::new("a@h");
    let (p1, p2) = (pid("a@h", 10), pid("a@h", 11));
    h.register("n", &p1);
    let (id, actions) = h.register("n", &p2);
    assert_eq!(
        reply(&actions, id),
        Some(Reply::Done(Err(GlobalError::Taken("n".into()))))
    );
    let (id, actions) = h.register("other", &p1);
    assert!(matches!(
        reply(&actions, id),
        Some(Reply::Done(Err(GlobalError::Taken(_))))
    ));
    assert_eq!(h.m.whereis(&name("n")), Some(p1));
    assert_eq!(h.m.whereis(&name("other")), None);
}

#[test]
fn registration_locks_and_calls_every_known_node() {
    let mut h = Harness::new("a@h");
    h.sync("z@h", Vec::new(), Vec::new());
    assert_eq!(h.known(), ["z@h"]);
    let p = pid("a@h", 10);
    let (id, actions) = h.register("n", &p);
    // The boss (z@h, the highest name) is locked first.
    let lock = LockId(name("global"), Term::Pid(pid("a@h", 3)));
    let [(call, CallTo::Gns(to), request)] = &calls(&actions)[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(to.as_str(), "z@h");
    assert_eq!(*request, Call::SetLock(lock.clone()).to_term());
    assert_eq!(reply(&actions, id), None, "no answer while locking");
    // Meanwhile the lock is not ours here: another requester cannot take `global`... after
    // the boss answers, we lock ourselves and call `register` on z@h.
    let actions = h.input(Input::CallReply(*call, Some(Term::atom("true"))));
    let [(call, CallTo::Gns(_), request)] = &calls(&actions)[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        *request,
        Call::Register(name("n"), p.clone(), default_method()).to_term()
    );
    assert!(
        !h.lock(&pid("z@h", 7), &lid("global", "q")),
        "global is locked here too"
    );
    let actions = h.input(Input::CallReply(*call, Some(Term::atom("yes"))));
    assert_eq!(reply(&actions, id), Some(Reply::Done(Ok(()))));
    assert_eq!(h.m.whereis(&name("n")), Some(p));
    // Released everywhere: a del_lock to z@h, and here.
    assert!(calls(&actions)
        .iter()
        .any(|(_, to, r)| *to == CallTo::Gns(atom("z@h"))
            && *r == Call::DelLock(lock.clone()).to_term()));
    assert!(h.lock(&pid("z@h", 7), &lid("global", "q")));
}

#[test]
fn a_name_taken_while_locking_is_refused_at_apply_time() {
    let mut h = Harness::new("a@h");
    h.sync("z@h", Vec::new(), Vec::new());
    let (id, actions) = h.register("n", &pid("a@h", 10));
    let (call, ..) = calls(&actions)[0].clone();
    // z@h registered the name before it granted our lock.
    h.call(
        &pid("z@h", 4),
        Call::Register(name("n"), pid("z@h", 20), default_method()),
    );
    let actions = h.input(Input::CallReply(call, Some(Term::atom("true"))));
    assert!(matches!(
        reply(&actions, id),
        Some(Reply::Done(Err(GlobalError::Taken(_))))
    ));
    assert_eq!(h.m.whereis(&name("n")), Some(pid("z@h", 20)));
}

#[test]
fn the_registrar_backs_off_and_retries_when_its_timer_fires() {
    let mut h = Harness::new("a@h");
    h.sync("z@h", Vec::new(), Vec::new());
    let (id, actions) = h.register("n", &pid("a@h", 10));
    let (call, ..) = calls(&actions)[0].clone();
    let actions = h.input(Input::CallReply(call, Some(Term::atom("false"))));
    let timer = actions
        .iter()
        .find_map(|a| match a {
            Action::SetTimer {
                timer: t @ Timer::Registrar(_),
                after_ms,
            } => Some((t.clone(), *after_ms)),
            _ => None,
        })
        .expect("a back-off timer");
    assert!(timer.1 >= 10, "{timer:?}");
    assert!(calls(&actions).is_empty(), "nothing until the timer");
    let actions = h.input(Input::Timer(timer.0));
    let (call, to, _) = calls(&actions)[0].clone();
    assert_eq!(to, CallTo::Gns(atom("z@h")));
    let actions = h.input(Input::CallReply(call, Some(Term::atom("true"))));
    let (call, ..) = calls(&actions)[0].clone();
    let actions = h.input(Input::CallReply(call, Some(Term::atom("yes"))));
    assert_eq!(reply(&actions, id), Some(Reply::Done(Ok(()))));
}

#[test]
fn unregistering_removes_the_name_here_and_on_known_nodes() {
    let mut h = Harness::new("a@h");
    let p = pid("a@h", 10);
    h.register("n", &p);
    let (id, actions) = h.request(Request::Unregister(name("n")));
    assert_eq!(reply(&actions, id), Some(Reply::Done(Ok(()))));
    assert!(has(&actions, &Action::Demonitor(p)));
    assert_eq!(h.m.whereis(&name("n")), None);
    // From another node.
    h.sync("z@h", Vec::new(), Vec::new());
    h.call(
        &pid("z@h", 4),
        Call::Register(name("m"), pid("z@h", 20), default_method()),
    );
    assert_eq!(h.m.whereis(&name("m")), Some(pid("z@h", 20)));
    let (_, ok) = h.call(&pid("z@h", 4), Call::Unregister(name("m")));
    assert_eq!(ok, Some(Term::atom("ok")));
    assert_eq!(h.m.whereis(&name("m")), None);
}

#[test]
fn a_name_goes_when_its_process_dies() {
    let mut h = Harness::new("a@h");
    let p = pid("a@h", 10);
    h.register("n", &p);
    h.input(Input::ProcessDown(p.clone()));
    assert_eq!(h.m.whereis(&name("n")), None);
    // The name is free again.
    let (id, actions) = h.register("n", &pid("a@h", 11));
    assert_eq!(reply(&actions, id), Some(Reply::Done(Ok(()))));
}

#[test]
fn a_name_goes_when_its_node_goes_down() {
    let mut h = Harness::new("a@h");
    h.sync("b@h", Vec::new(), Vec::new());
    h.sync("c@h", Vec::new(), Vec::new());
    let remote = pid("b@h", 20);
    let (actions, _) = h.call(
        &pid("b@h", 4),
        Call::Register(name("n"), remote.clone(), default_method()),
    );
    assert!(has(&actions, &Action::Monitor(remote.clone())));
    let actions = h.down("b@h");
    assert_eq!(h.m.whereis(&name("n")), None);
    assert_eq!(h.known(), ["c@h"]);
    // The other node in sync hears that we lost b@h.
    assert!(to_gns(&actions, "c@h").iter().any(|m| matches!(
        m,
        GnsMsg::LostConnection(a, _, _, b) if a.as_str() == "a@h" && b.as_str() == "b@h"
    )));
}

#[test]
fn connection_phases_from_init_connect_to_in_sync() {
    let mut h = Harness::new("a@h");
    let peer = atom("b@h");
    let names_here = pid("a@h", 10);
    h.register("mine", &names_here);
    let actions = h.up("b@h");
    let my_tag = init_tag(&actions, "b@h").expect("init_connect");
    assert!(matches!(h.m.phase(&peer), Some(Phase::AwaitInit)));
    h.cast("b@h", init_connect("b@h", 5));
    assert!(matches!(
        h.m.phase(&peer),
        Some(Phase::Locking {
            lock_sent: false,
            ..
        })
    ));
    // His locker locks us (a registration must wait now), then says so: our lock_set and
    // our names go.
    h.call(&his_locker("b@h"), Call::SetLock(h.conn_lock("b@h")));
    let (_, actions) = h.register("blocked", &pid("a@h", 11));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::SetTimer {
            timer: Timer::Registrar(_),
            ..
        }
    )));
    let actions = h.cast(
        "b@h",
        Cast::LockSet(his_locker("b@h"), true, Term::NIL, my_tag.clone()),
    );
    let sent = to_gns(&actions, "b@h");
    assert!(matches!(
        &sent[0],
        GnsMsg::GenCast(Cast::LockSet(l, true, _, t)) if *l == pid("a@h", 2) && *t == Term::Int(5)
    ));
    assert!(matches!(
        &sent[1],
        GnsMsg::GenCast(Cast::Exchange(_, names, _, t))
            if *t == Term::Int(5) && names == &vec![NameItem(name("mine"), names_here.clone(), default_method())]
    ));
    assert!(matches!(h.m.phase(&peer), Some(Phase::Exchanged)));
    let his = NameItem(name("his"), pid("b@h", 30), default_method());
    let actions = h.cast(
        "b@h",
        Cast::Exchange(peer.clone(), vec![his.clone()], Term::NIL, my_tag.clone()),
    );
    assert_eq!(resolved_ops(&actions, "b@h"), Some(Vec::new()));
    assert!(matches!(
        h.m.phase(&peer),
        Some(Phase::AwaitResolved { .. })
    ));
    assert_eq!(h.known(), Vec::<String>::new());
    // A resolved with another tag is an old session's: ignored.
    h.cast("b@h", resolved("b@h", Vec::new(), Term::Int(1)));
    assert!(h.m.phase(&peer).is_some());
    let actions = h.cast("b@h", resolved("b@h", Vec::new(), my_tag));
    assert!(h.m.phase(&peer).is_none());
    assert_eq!(h.known(), ["b@h"]);
    assert_eq!(h.m.whereis(&name("his")), Some(pid("b@h", 30)));
    assert!(has(&actions, &Action::Monitor(pid("b@h", 30))));
    h.call(&his_locker("b@h"), Call::DelLock(h.conn_lock("b@h")));
    // The connection lock is gone: another requester may take `global`.
    assert!(h.lock(&pid("b@h", 9), &lid("global", "q")));
}

#[test]
fn our_locker_starts_when_its_timer_fires() {
    let mut h = Harness::new("a@h");
    let actions = h.up("b@h");
    let my_tag = init_tag(&actions, "b@h").expect("init_connect");
    let Term::Int(tag) = my_tag else {
        panic!("an integer tag")
    };
    let timer = Timer::Locker {
        node: atom("b@h"),
        tag,
    };
    assert!(has(
        &actions,
        &Action::SetTimer {
            timer: timer.clone(),
            after_ms: LOCKER_DELAY_MS
        }
    ));
    // Before the peer's init_connect the locker waits again.
    let actions = h.input(Input::Timer(timer.clone()));
    assert!(has(
        &actions,
        &Action::SetTimer {
            timer: timer.clone(),
            after_ms: LOCKER_DELAY_MS
        }
    ));
    assert!(calls(&actions).is_empty());
    h.cast("b@h", init_connect("b@h", 5));
    // A timer of an older attempt does nothing.
    let stale = h.input(Input::Timer(Timer::Locker {
        node: atom("b@h"),
        tag: tag - 1,
    }));
    assert!(stale.is_empty(), "{stale:?}");
    let actions = h.input(Input::Timer(timer));
    let [(call, to, request)] = &calls(&actions)[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(*to, CallTo::Gns(atom("b@h")));
    assert_eq!(*request, Call::SetLock(h.conn_lock("b@h")).to_term());
    let actions = h.input(Input::CallReply(*call, Some(Term::atom("true"))));
    let sent = to_gns(&actions, "b@h");
    assert_eq!(sent.len(), 1, "lock_set only: {sent:?}");
    assert!(matches!(
        &sent[0],
        GnsMsg::GenCast(Cast::LockSet(_, true, _, _))
    ));
    let actions = h.cast(
        "b@h",
        Cast::LockSet(his_locker("b@h"), true, Term::NIL, my_tag),
    );
    assert!(matches!(
        &to_gns(&actions, "b@h")[..],
        [GnsMsg::GenCast(Cast::Exchange(..))]
    ));
}

#[test]
fn a_refused_locker_releases_and_retries() {
    let mut h = Harness::new("a@h");
    let (_, call) = h.our_locker_calls("b@h");
    let actions = h.input(Input::CallReply(call, Some(Term::atom("false"))));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::SetTimer { timer: Timer::Locker { .. }, after_ms } if *after_ms >= LOCKER_DELAY_MS
    )));
    // Our half of the lock went too.
    assert!(h.lock(&pid("c@h", 9), &lid("global", "q")));
}

#[test]
fn clash_decided_here_with_the_default_method_kills_the_loser() {
    // a@h < b@h: we decide; our process on a@h (the smaller node) wins.
    let mut h = Harness::new("a@h");
    let mine = pid("a@h", 10);
    let his = pid("b@h", 30);
    h.register("x", &mine);
    let steps = h.sync(
        "b@h",
        vec![NameItem(name("x"), his.clone(), default_method())],
        Vec::new(),
    );
    let exchange = &steps[4];
    assert!(has(
        exchange,
        &Action::Exit {
            pid: his.clone(),
            reason: Term::atom("kill")
        }
    ));
    assert_eq!(
        resolved_ops(exchange, "b@h"),
        Some(vec![Op::Insert(NameItem(
            name("x"),
            mine.clone(),
            default_method()
        ))])
    );
    assert_eq!(h.m.whereis(&name("x")), Some(mine));
}

#[test]
fn clash_decided_here_with_notify_all_removes_the_name() {
    let mut h = Harness::new("a@h");
    let mine = pid("a@h", 10);
    let his = pid("b@h", 30);
    let notify_all = Term::Fun(Box::new(Fun::Export {
        module: atom("global"),
        function: atom("notify_all_name"),
        arity: 3,
    }));
    h.request(Request::Register {
        name: name("x"),
        pid: mine.clone(),
        method: notify_all,
    });
    let steps = h.sync(
        "b@h",
        vec![NameItem(name("x"), his.clone(), default_method())],
        Vec::new(),
    );
    let exchange = &steps[4];
    assert_eq!(
        resolved_ops(exchange, "b@h"),
        Some(vec![Op::Delete(name("x"))])
    );
    let conflict = |other: &Pid| {
        Term::tuple(vec![
            Term::atom("global_name_conflict"),
            name("x"),
            Term::Pid(other.clone()),
        ])
    };
    assert!(has(
        exchange,
        &Action::Send {
            to: Dest::Pid(his.clone()),
            msg: conflict(&mine)
        }
    ));
    assert!(has(
        exchange,
        &Action::Send {
            to: Dest::Pid(mine.clone()),
            msg: conflict(&his)
        }
    ));
    assert_eq!(h.m.whereis(&name("x")), None);
}

#[test]
fn clash_decided_by_the_peer_takes_its_resolved_ops() {
    // a@h < m@h: the peer decides; we resolve nothing and apply what it sends.
    let mut h = Harness::new("m@h");
    let mine = pid("m@h", 10);
    let his = pid("a@h", 30);
    h.register("x", &mine);
    let his_item = NameItem(name("x"), his.clone(), default_method());
    let steps = h.sync("a@h", vec![his_item.clone()], vec![Op::Insert(his_item)]);
    assert!(!steps[4].iter().any(|a| matches!(a, Action::Exit { .. })));
    assert_eq!(resolved_ops(&steps[4], "a@h"), Some(Vec::new()));
    assert_eq!(h.m.whereis(&name("x")), Some(his.clone()));
    assert!(has(&steps[5], &Action::Demonitor(mine)));
    assert!(has(&steps[5], &Action::Monitor(his)));
}

#[test]
fn clash_resolved_on_the_node_of_our_process() {
    // Our entry's process lives on c@h: the method runs there (`global:resolve_it` by rpc),
    // and our `resolved` waits for its answer.
    let mut h = Harness::new("a@h");
    h.sync("c@h", Vec::new(), Vec::new());
    let ours = pid("c@h", 10);
    h.call(
        &pid("c@h", 4),
        Call::Register(name("x"), ours.clone(), default_method()),
    );
    let his = pid("b@h", 30);
    let mut steps = h.sync(
        "b@h",
        vec![NameItem(name("x"), his.clone(), default_method())],
        Vec::new(),
    );
    let exchange = steps.remove(4);
    assert_eq!(
        resolved_ops(&exchange, "b@h"),
        None,
        "waits for the resolver"
    );
    let [(call, CallTo::Rex(node), request)] = &calls(&exchange)[..] else {
        panic!("{exchange:?}");
    };
    assert_eq!(node.as_str(), "c@h");
    assert!(request.to_string().contains("resolve_it"), "{request}");
    assert!(h.m.phase(&atom("b@h")).is_some(), "not in sync yet");
    let actions = h.input(Input::CallReply(*call, Some(Term::Pid(ours.clone()))));
    assert_eq!(
        resolved_ops(&actions, "b@h"),
        Some(vec![Op::Insert(NameItem(
            name("x"),
            ours.clone(),
            default_method()
        ))])
    );
    // The peer's resolved came while we waited: the sync completes now.
    assert!(h.m.phase(&atom("b@h")).is_none());
    assert_eq!(h.known(), ["b@h", "c@h"]);
    assert_eq!(h.m.whereis(&name("x")), Some(ours));
}

#[test]
fn locks_set_conflict_and_release() {
    let mut h = Harness::new("a@h");
    let (p1, p2, p3) = (pid("b@h", 1), pid("b@h", 2), pid("c@h", 3));
    let id1 = lid("r", "q1");
    let id2 = lid("r", "q2");
    let (actions, ok) = h.call(&p1, Call::SetLock(id1.clone()));
    assert_eq!(ok, Some(Term::atom("true")));
    assert!(has(&actions, &Action::Monitor(p1.clone())));
    // Another requester: refused; the same requester from another process: shared.
    assert!(!h.lock(&p3, &id2));
    assert!(h.lock(&p2, &id1));
    let (actions, _) = h.call(&p1, Call::DelLock(id1.clone()));
    assert!(has(&actions, &Action::Demonitor(p1)));
    assert!(!h.lock(&p3, &id2));
    h.call(&p2, Call::DelLock(id1));
    assert!(h.lock(&p3, &id2));
}

#[test]
fn a_lock_goes_when_its_holder_dies() {
    let mut h = Harness::new("a@h");
    let holder = pid("a@h", 40);
    let id1 = lid("r", "q1");
    h.call(&holder, Call::SetLock(id1));
    let other = lid("r", "q2");
    assert!(!h.lock(&pid("a@h", 41), &other));
    h.input(Input::ProcessDown(holder));
    assert!(h.lock(&pid("a@h", 41), &other));
}

#[test]
fn a_lock_goes_when_its_holders_node_goes_down() {
    let mut h = Harness::new("a@h");
    h.up("c@h");
    let holder = pid("c@h", 40);
    h.call(&holder, Call::SetLock(lid("r", "q1")));
    let other = lid("r", "q2");
    assert!(!h.lock(&pid("a@h", 41), &other));
    let actions = h.down("c@h");
    assert!(has(&actions, &Action::Demonitor(holder)));
    assert!(h.lock(&pid("a@h", 41), &other));
}

#[test]
fn async_del_name_and_async_del_lock_remove_what_they_name() {
    let mut h = Harness::new("a@h");
    let p = pid("b@h", 20);
    h.call(
        &pid("b@h", 4),
        Call::Register(name("n"), p.clone(), default_method()),
    );
    // Another pid under the name: the name stays.
    h.cast("b@h", Cast::AsyncDelName(name("n"), pid("b@h", 21)));
    assert_eq!(h.m.whereis(&name("n")), Some(p.clone()));
    let actions = h.cast("b@h", Cast::AsyncDelName(name("n"), p.clone()));
    assert_eq!(h.m.whereis(&name("n")), None);
    assert!(has(&actions, &Action::Demonitor(p.clone())));

    h.call(&p, Call::SetLock(lid("r", "q1")));
    let other = lid("r", "q2");
    assert!(!h.lock(&pid("a@h", 41), &other));
    h.cast("b@h", Cast::AsyncDelLock(name("r"), p));
    assert!(h.lock(&pid("a@h", 41), &other));
}

#[test]
fn local_set_lock_and_del_lock_span_the_known_nodes() {
    let mut h = Harness::new("a@h");
    h.sync("z@h", Vec::new(), Vec::new());
    let id = lid("r", "q");
    let (req, actions) = h.request(Request::SetLock(id.clone()));
    let (call, to, request) = calls(&actions)[0].clone();
    assert_eq!(to, CallTo::Gns(atom("z@h")));
    assert_eq!(request, Call::SetLock(id.clone()).to_term());
    let actions = h.input(Input::CallReply(call, Some(Term::atom("true"))));
    assert_eq!(reply(&actions, req), Some(Reply::Lock(true)));
    // Held here until del_lock.
    let other = lid("r", "q2");
    assert!(!h.lock(&pid("z@h", 9), &other));
    let (req, actions) = h.request(Request::DelLock(id.clone()));
    assert_eq!(reply(&actions, req), Some(Reply::Lock(true)));
    assert!(calls(&actions)
        .iter()
        .any(|(_, to, r)| *to == CallTo::Gns(atom("z@h"))
            && *r == Call::DelLock(id.clone()).to_term()));
    assert!(h.lock(&pid("z@h", 9), &other));
}

#[test]
fn register_ext_keeps_the_registering_node() {
    let mut h = Harness::new("a@h");
    let cnode = pid("c@h", 1);
    // Registered through us: we link to the C node's process.
    let (actions, yes) = h.call(
        &pid("a@h", 50),
        Call::RegisterExt(name("cn"), cnode.clone(), default_method(), atom("a@h")),
    );
    assert_eq!(yes, Some(Term::atom("yes")));
    assert!(has(&actions, &Action::Link(cnode.clone())));
    let (_, ext) = h.call(&pid("a@h", 50), Call::GetNamesExt);
    assert_eq!(
        ext,
        Some(vec![ExtItem(name("cn"), cnode.clone(), atom("a@h"))].to_term())
    );
    // A peer learns it as an external name in our `resolved`.
    let steps = h.sync("b@h", Vec::new(), Vec::new());
    let ext_sent = to_gns(&steps[4], "b@h").into_iter().find_map(|m| match m {
        GnsMsg::GenCast(Cast::Resolved(_, _, _, _, ext, _)) => Some(ext),
        _ => None,
    });
    assert_eq!(
        ext_sent,
        Some(vec![ExtItem(name("cn"), cnode.clone(), atom("a@h"))])
    );
    let (actions, _) = h.call(&pid("a@h", 50), Call::Unregister(name("cn")));
    assert!(has(&actions, &Action::Unlink(cnode)));

    // Through new_nodes, an insert named in names_ext is external; not linked here.
    let other = pid("d@h", 1);
    let actions = h.cast(
        "b@h",
        Cast::NewNodes(
            atom("b@h"),
            vec![Op::Insert(NameItem(
                name("dn"),
                other.clone(),
                default_method(),
            ))],
            vec![ExtItem(name("dn"), other.clone(), atom("b@h"))],
            Term::NIL,
            Term::NIL,
        ),
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Link(_))));
    let (_, ext) = h.call(&pid("a@h", 50), Call::GetNamesExt);
    assert_eq!(
        ext,
        Some(vec![ExtItem(name("dn"), other, atom("b@h"))].to_term())
    );
}

#[test]
fn new_nodes_are_connected_and_told_in_sync() {
    let mut h = Harness::new("a@h");
    h.sync("b@h", Vec::new(), Vec::new());
    let actions = h.cast(
        "b@h",
        Cast::NewNodes(
            atom("b@h"),
            Vec::new(),
            Vec::new(),
            Term::list(vec![Term::tuple(vec![Term::atom("c@h"), Term::Int(VSN)])]),
            Term::NIL,
        ),
    );
    assert!(has(&actions, &Action::Connect(atom("c@h"))));
    assert_eq!(h.known(), ["b@h", "c@h"]);
    let actions = h.up("c@h");
    let sent = to_gns(&actions, "c@h");
    assert!(
        matches!(&sent[..], [GnsMsg::GenCast(Cast::InSync(n, _))] if n.as_str() == "a@h"),
        "in_sync and no init_connect: {sent:?}"
    );
}

#[test]
fn whereis_messages_and_calls_from_erlang_are_answered() {
    let mut h = Harness::new("a@h");
    let p = pid("a@h", 10);
    h.register("n", &p);
    let asker = pid("b@h", 7);
    let msg = GnsMsg::Whereis(name("n"), From(asker.clone(), Term::Int(1))).encode();
    let actions = h.input(Input::Message {
        from: atom("b@h"),
        msg,
    });
    assert!(has(
        &actions,
        &Action::Send {
            to: Dest::Pid(asker.clone()),
            msg: Term::tuple(vec![Term::Int(1), Term::Pid(p)])
        }
    ));
    assert_eq!(
        h.call(&asker, Call::GetProtocolVersion).1,
        Some(Term::Int(VSN))
    );
    let (actions, none) = h.call(&asker, Call::Other(Term::atom("what")));
    assert_eq!(none, None);
    assert!(actions.is_empty());
}

#[test]
fn each_node_counts_its_own_tags() {
    // Two machines in one process: the first attempt of each has the same tag.
    let mut a = Harness::new("a@h");
    let mut b = Harness::new("b@h");
    let ta = init_tag(&a.up("z@h"), "z@h");
    let tb = init_tag(&b.up("z@h"), "z@h");
    assert!(ta.is_some());
    assert_eq!(ta, tb);
    let ta2 = init_tag(&a.up("y@h"), "y@h");
    assert_ne!(ta, ta2);
}

#[test]
fn lost_connection_reports_make_us_drop_the_node() {
    let mut h = Harness::new("a@h");
    h.sync("b@h", Vec::new(), Vec::new());
    h.sync("c@h", Vec::new(), Vec::new());
    let report = GnsMsg::LostConnection(atom("b@h"), Term::Int(1), Term::Int(1), atom("c@h"));
    let actions = h.input(Input::Message {
        from: atom("b@h"),
        msg: report.encode(),
    });
    assert!(to_gns(&actions, "c@h")
        .iter()
        .any(|m| matches!(m, GnsMsg::RemoveConnection(n) if n.as_str() == "a@h")));
    assert_eq!(h.known(), ["b@h"]);
    // The same report again: nothing.
    let again = h.input(Input::Message {
        from: atom("b@h"),
        msg: report.encode(),
    });
    assert!(again.is_empty(), "{again:?}");
    // remove_connection: disconnect.
    let actions = h.input(Input::Message {
        from: atom("b@h"),
        msg: GnsMsg::RemoveConnection(atom("b@h")).encode(),
    });
    assert!(has(&actions, &Action::Disconnect(atom("b@h"))));
    assert!(h.known().is_empty());
}

#[test]
fn a_lock_our_locker_got_after_his_locker_won_is_given_back() {
    // Both lockers run at once: his completes the sync while our set_lock is out; when ours
    // is granted after all, the peer's lock must not stay with our locker.
    for answer_after_sync in [false, true] {
        let mut h = Harness::new("a@h");
        let (my_tag, ours) = h.our_locker_calls("b@h");
        h.call(&his_locker("b@h"), Call::SetLock(h.conn_lock("b@h")));
        h.cast(
            "b@h",
            Cast::LockSet(his_locker("b@h"), true, Term::NIL, my_tag.clone()),
        );
        let lock = h.conn_lock("b@h");
        let del = Call::DelLock(lock.clone()).to_term();
        let gives_back = |actions: &[Action]| {
            calls(actions)
                .iter()
                .any(|(_, to, r)| *to == CallTo::Gns(atom("b@h")) && *r == del)
        };
        let mut released = false;
        if !answer_after_sync {
            let actions = h.input(Input::CallReply(ours, Some(Term::atom("true"))));
            released |= gives_back(&actions);
        }
        h.cast(
            "b@h",
            Cast::Exchange(atom("b@h"), Vec::new(), Term::NIL, my_tag.clone()),
        );
        let actions = h.cast("b@h", resolved("b@h", Vec::new(), my_tag));
        released |= gives_back(&actions);
        assert_eq!(h.known(), ["b@h"]);
        if answer_after_sync {
            assert!(!released);
            let actions = h.input(Input::CallReply(ours, Some(Term::atom("true"))));
            released |= gives_back(&actions);
        }
        assert!(released, "answer after sync: {answer_after_sync}");
    }
}
