use super::*;
use crate::sql::shape::tests::renumbered;
use proptest::prelude::*;

const FUNCTIONS: [&str; 3] = ["f1", "1f", "s.f2"];

fn functions() -> Vec<String> {
    FUNCTIONS.iter().map(|f| f.to_string()).collect()
}

/// Pieces of SQL that put numbers next to everything the classifier
/// reads: verbs, write words, calls, hints, quotes, tags, parameters.
fn sqlish() -> impl Strategy<Value = Vec<u8>> {
    // `|` separates the pieces.
    let verbs: Vec<&str> = "select |SELECT |with |set |begin |insert ||/* 1 */"
        .split('|')
        .collect();
    let pieces: Vec<&str> = concat!(
        "select |into |role |read |only |nextval(|f1(|md5(|int8(|s.f2(|f|s|.|(|)| |;|1|23|",
        "0.5e1|'|'7'|\"|\"1f\"(|$|$1|$a1$|$$|--|/*|*/|\n|e'|\\|x|pgwarden:route=replica|",
        "pgwarden:route=primary|\0|\u{e9}",
    )
    .split('|')
    .collect();
    (
        proptest::sample::select(verbs),
        proptest::collection::vec(proptest::sample::select(pieces), 0..16),
    )
        .prop_map(|(verb, p)| format!("{verb}{}", p.concat()).into_bytes())
}

#[test]
fn a_hit_gives_the_class_of_its_own_text() {
    let fns = functions();
    let read = b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;";
    let again = b"SELECT abalance FROM pgbench_accounts WHERE aid = 90210;";
    assert_eq!(classify_remembered(read, &fns).intent, Intent::Read);
    assert!(MEMO.with(|m| m.borrow_mut().find(again).is_some()));
    assert_eq!(classify_remembered(again, &fns).intent, Intent::Read);
    // Same shape as far as the first number, different after it.
    let write = b"SELECT abalance FROM pgbench_accounts WHERE aid = 7 FOR UPDATE;";
    assert_eq!(classify_remembered(write, &fns).intent, Intent::Write);
    // The class without the functions is kept; with them it is asked again.
    for (sql, with_functions, intent) in [
        (&b"SELECT f1(2)"[..], false, Intent::Uncertain),
        (b"SELECT f1(3)", true, Intent::Read),
        (b"SELECT f1(4)", false, Intent::Uncertain),
        (b"SELECT f2(4)", true, Intent::Uncertain),
    ] {
        let given = if with_functions { &fns[..] } else { &[] };
        assert_eq!(classify_remembered(sql, given).intent, intent);
    }
    // A quoted name is never remembered.
    let quoted = b"SELECT \"1f\"()";
    assert_eq!(classify_remembered(quoted, &fns), classify(quoted, &fns));
    assert!(MEMO.with(|m| m.borrow_mut().find(quoted).is_none()));
}

#[test]
fn the_memo_stays_small() {
    for n in 0..100 {
        let text = format!("SELECT c{n} FROM t WHERE x = {n}");
        classify_remembered(text.as_bytes(), &[]);
    }
    let long = format!("SELECT {} 1", "x ".repeat(MAX_TEXT));
    classify_remembered(long.as_bytes(), &[]);
    MEMO.with(|m| {
        let m = m.borrow();
        assert_eq!(m.entries.len(), ENTRIES);
        assert!(m.entries.iter().all(|e| e.text.len() <= MAX_TEXT));
    });
}

proptest! {
    /// What the memo relies on: texts of one shape without a `"` are
    /// classified alike, with the functions or without.
    #[test]
    fn one_shape_one_class(a in sqlish(), pool in proptest::collection::vec(any::<u8>(), 1..32)) {
        prop_assume!(!a.contains(&b'"'));
        let b = renumbered(&a, &pool);
        prop_assert!(same_shape(&a, &b));
        let fns = functions();
        prop_assert_eq!(classify(&a, &[]), classify(&b, &[]), "{:?} {:?}", a, b);
        prop_assert_eq!(classify(&a, &fns), classify(&b, &fns), "{:?} {:?}", a, b);
    }

    /// Whatever this thread remembered before, the answer is the text's own.
    #[test]
    fn remembered_equals_classified(
        texts in proptest::collection::vec(sqlish(), 1..6),
        pool in proptest::collection::vec(any::<u8>(), 1..32),
        with_functions in any::<bool>(),
    ) {
        let fns = if with_functions { functions() } else { Vec::new() };
        for a in &texts {
            for t in [a.clone(), renumbered(a, &pool)] {
                prop_assert_eq!(classify_remembered(&t, &fns), classify(&t, &fns), "{:?}", t);
            }
        }
    }
}
