use super::*;

const WRITES: &str = include_str!("../../../tests/data/routing/writes.sql");
const READS: &str = include_str!("../../../tests/data/routing/reads.sql");

/// Each corpus line as SQL, and whether it writes only through a user function.
fn corpus(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix("fn ") {
            Some(rest) => (rest.replace("\\n", "\n"), true),
            None => (l.replace("\\n", "\n"), false),
        })
        .collect()
}

fn of(sql: &str) -> Classified {
    classify(sql.as_bytes(), &[])
}

#[test]
fn writes_never_classify_as_reads() {
    let mut n = 0;
    for (sql, via_function) in corpus(WRITES) {
        let c = of(&sql);
        assert_ne!(c.intent, Intent::Read, "{sql}");
        if !via_function {
            assert_eq!(c.intent, Intent::Write, "{sql}");
            let hinted = format!("/* pgwarden:route=replica */ {sql}");
            assert_eq!(of(&hinted).intent, Intent::Write, "{hinted}");
        }
        let commented = format!("-- select 1;\n{}", sql.to_lowercase());
        assert_ne!(of(&commented).intent, Intent::Read, "{commented}");
        n += 1;
    }
    assert!(n >= 130, "corpus has {n} statements");
}

#[test]
fn reads_classify_as_reads() {
    for (sql, _) in corpus(READS) {
        assert_eq!(of(&sql).intent, Intent::Read, "{sql}");
        assert_eq!(of(&sql.to_uppercase()).intent, Intent::Read, "{sql}");
    }
}

#[test]
fn hints() {
    assert_eq!(
        of("/* pgwarden:route=primary */ SELECT 1").hint,
        Some(Hint::Primary)
    );
    let c = of("SELECT my_func() -- pgwarden:route=replica");
    assert_eq!((c.intent, c.hint), (Intent::Uncertain, Some(Hint::Replica)));
    assert_eq!(of("/* pgwarden:route=sideways */ SELECT 1").hint, None);
    assert_eq!(of("SELECT 'pgwarden:route=primary'").hint, None);
}

#[test]
fn listed_functions_are_reads() {
    let listed = vec!["my_func".to_string(), "app.lookup".to_string()];
    let c = |sql: &str| classify(sql.as_bytes(), &listed).intent;
    assert_eq!(c("SELECT my_func(1)"), Intent::Read);
    assert_eq!(c("SELECT app.lookup(1)"), Intent::Read);
    assert_eq!(c("SELECT other.lookup(1)"), Intent::Uncertain);
    assert_eq!(c("SELECT lookup(1)"), Intent::Uncertain);
    assert_eq!(c("SELECT myschema.count(1)"), Intent::Uncertain);
}

#[test]
fn combining_keeps_the_least_safe() {
    let read = of("SELECT 1");
    let write = of("INSERT INTO t VALUES (1)");
    assert_eq!(read.and(write).intent, Intent::Write);
    assert_eq!(read.and(read).intent, Intent::Read);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = classify(&bytes, &["f".to_string()]);
            let _ = crate::routing::unit::first_unit(&bytes, 1 << 20, &[], |_| None);
            let _ = crate::routing::control::parse(&bytes);
        }

        #[test]
        fn unknown_verbs_go_to_the_primary(word in "[a-z]{2,12}", rest in ".{0,64}") {
            prop_assume!(!matches!(
                word.as_str(),
                "select" | "with" | "values" | "table" | "explain" | "show" | "set" | "reset"
                    | "commit" | "end" | "rollback" | "abort" | "begin" | "start"
            ));
            let sql = format!("{word} {rest}");
            prop_assert_ne!(classify(sql.as_bytes(), &[]).intent, Intent::Read, "{}", sql);
        }

        /// The prefilter never dismisses a word the full comparison
        /// would find: any case, any neighbouring bytes.
        #[test]
        fn the_write_word_prefilter_misses_none(
            word in "[a-zA-Z_$0-9\u{80}-\u{ff}]{1,20}",
            pick in 0..WRITE_WORDS.len(),
            flips in any::<u16>(),
        ) {
            let w = word.as_bytes();
            if is_write_word(keyword(w, &mut [0u8; KEYWORD_MAX])) {
                prop_assert!(may_be_write_word(w));
            }
            let cased: Vec<u8> = WRITE_WORDS[pick]
                .iter()
                .enumerate()
                .map(|(i, c)| if flips & (1 << i) != 0 { c.to_ascii_uppercase() } else { *c })
                .collect();
            prop_assert!(may_be_write_word(&cased));
            let sql = format!("SELECT a FROM t {} b", String::from_utf8_lossy(&cased));
            prop_assert_eq!(classify(sql.as_bytes(), &[]).intent, Intent::Write);
        }

        #[test]
        fn a_write_anywhere_wins(prefix in "(SELECT 1; |VALUES (2); |SHOW x; )*", quote in "[a-z ]{0,10}") {
            let sql = format!("{prefix}SELECT '{quote}'; INSERT INTO t VALUES (1)");
            prop_assert_eq!(classify(sql.as_bytes(), &[]).intent, Intent::Write);
        }
    }
}

/// Every write word passes the prefilter, and the words of a common read
/// mostly do not (else the prefilter saves nothing).
#[test]
fn the_write_word_prefilter() {
    for w in WRITE_WORDS {
        assert!(may_be_write_word(w));
        assert!(may_be_write_word(&w.to_ascii_uppercase()));
    }
    let common = [
        "abalance",
        "from",
        "pgbench_accounts",
        "where",
        "aid",
        "id",
        "name",
        "order",
        "by",
        "limit",
        "join",
        "on",
        "and",
        "or",
        "not",
        "null",
        "users",
        "created_at",
        "count",
        "group",
        "as",
        "in",
        "is",
        "true",
        "false",
        "desc",
        "asc",
        "left",
        "email",
        "status",
    ];
    let passed = common
        .iter()
        .filter(|w| may_be_write_word(w.as_bytes()))
        .count();
    assert!(
        passed <= 3,
        "{passed} of {} common words pass",
        common.len()
    );
}

#[test]
fn words_longer_than_any_keyword_are_plain_names() {
    let long = "a_column_name_longer_than_sixteen_bytes";
    assert_eq!(of(&format!("SELECT {long} FROM t")).intent, Intent::Read);
    assert_eq!(of(&format!("{long} x")).intent, Intent::Write);
    assert_eq!(
        of(&format!("SELECT {long} FROM t FOR UPDATE")).intent,
        Intent::Write
    );
    assert_eq!(
        of(&format!(
            "WITH {long} AS (DELETE FROM t RETURNING *) SELECT * FROM {long}"
        ))
        .intent,
        Intent::Write
    );
    assert_eq!(
        of("SET TRANSACTION_ISOLATION_LEVEL_LONG_NAME = 1").intent,
        Intent::Read
    );
}
