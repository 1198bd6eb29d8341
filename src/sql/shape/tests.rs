use super::*;
use proptest::prelude::*;

/// The definition, written the slow way: every number becomes `0`.
fn normalised(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let starts_number = s[i].is_ascii_digit() && (i == 0 || !is_ident(s[i - 1]));
        if starts_number {
            out.push(b'0');
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Bytes that make numbers, names, tags, quotes and comments likely.
fn sqlish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"0123456789019a_$e'\"-/*. ;(\0\x80".to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..48)
}

/// `s` with each number's digits replaced (one to three digits each,
/// cycling through `pool`), keeping everything else: a text of the same
/// shape.
pub(crate) fn renumbered(s: &[u8], pool: &[u8]) -> Vec<u8> {
    let pick = |k: usize| pool.get(k % pool.len().max(1)).copied().unwrap_or(0);
    let mut out = Vec::new();
    let (mut i, mut k) = (0, 0);
    while i < s.len() {
        if s[i].is_ascii_digit() && (i == 0 || !is_ident(s[i - 1])) {
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            for _ in 0..1 + pick(k) % 3 {
                out.push(b'0' + pick(k + 1) % 10);
                k += 2;
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn numbers_differ_names_do_not() {
    let q = |s: &str| s.as_bytes().to_vec();
    assert!(same_shape(
        &q("SELECT abalance FROM pgbench_accounts WHERE aid = 7;"),
        &q("SELECT abalance FROM pgbench_accounts WHERE aid = 90210;")
    ));
    assert!(same_shape(&q("12"), &q("3")));
    assert!(same_shape(&q("x IN (1, 22, 333)"), &q("x IN (4, 5, 6)")));
    assert!(same_shape(
        &q("'a 1' -- 2\n1.5e10"),
        &q("'a 22' -- 3\n7.5e10")
    ));
    assert!(!same_shape(&q("SELECT f1()"), &q("SELECT f2()")));
    assert!(!same_shape(&q("SELECT $1"), &q("SELECT $2")));
    assert!(!same_shape(&q("$a1$ x $a1$"), &q("$a2$ x $a1$")));
    assert!(!same_shape(&q("x = 1;"), &q("x = 1,")));
    assert!(!same_shape(&q("x = 1"), &q("x = ")));
    assert!(!same_shape(&q("x = 1"), &q("x = 1a")));
    assert!(!same_shape(&q("\u{e9}1"), &q("\u{e9}2")));
    assert!(same_shape(&q(""), &q("")));
}

proptest! {
    #[test]
    fn agrees_with_the_definition(a in sqlish(), b in sqlish()) {
        prop_assert_eq!(same_shape(&a, &b), normalised(&a) == normalised(&b));
    }

    #[test]
    fn renumbering_keeps_the_shape(a in sqlish(), digits in proptest::collection::vec(any::<u8>(), 0..64)) {
        let b = renumbered(&a, &digits);
        prop_assert!(same_shape(&a, &b));
        prop_assert!(same_shape(&b, &a));
    }

    #[test]
    fn one_changed_byte_is_seen(a in sqlish(), at in any::<usize>(), to in any::<u8>()) {
        prop_assume!(!a.is_empty());
        let mut b = a.clone();
        let at = at % a.len();
        b[at] = to;
        prop_assert_eq!(same_shape(&a, &b), normalised(&a) == normalised(&b));
    }
}
