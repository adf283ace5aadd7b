"""bench/pg_ceiling.py turns recorded statements into a pgbench script: each payment-scoped id
gets the per-execution suffix (so every execution writes new rows), shared rows (sellers,
subscribers, table names) do not, and transactions are kept whole in commit order."""

from __future__ import annotations

from bench.pg_ceiling import SUFFIX, build_script, statement_sql


def test_arguments_become_literals_and_ids_get_the_suffix() -> None:
    sql = statement_sql(
        "INSERT INTO t (a, b, c, d, e, f) VALUES ($1, $2, $3, $4, $5, $6::text[])",
        (
            "pay_01KDVDNE71C37K531XBH3WZVWD",
            "seller-3",
            100,
            None,
            True,
            ["ord_01KDVDNE71C3X", "o'k"],
        ),
    )
    assert sql == (
        "INSERT INTO t (a, b, c, d, e, f) VALUES ("
        f"'pay_01KDVDNE71C37K531XBH3WZVWD{SUFFIX}', 'seller-3', 100, NULL, true, "
        f"""'{{"ord_01KDVDNE71C3X{SUFFIX}","o''k"}}'::text[])"""
    )


def test_ids_inside_json_payloads_get_the_suffix_too() -> None:
    sql = statement_sql("SELECT $1::jsonb", ({"payment_id": "pay_01KDVDNE71C37K531X"},))
    assert f"pay_01KDVDNE71C37K531X{SUFFIX}" in sql


def test_transactions_stay_whole_in_commit_order_across_connections() -> None:
    record = [
        (1, "execute", "BEGIN ISOLATION LEVEL READ COMMITTED;", ()),
        (2, "execute", "BEGIN ISOLATION LEVEL READ COMMITTED;", ()),
        (1, "execute", "UPDATE a SET x = $1", (1,)),
        (2, "execute", "UPDATE b SET x = $1", (2,)),
        (3, "fetch", "SELECT 1", ()),
        (2, "execute", "COMMIT;", ()),
        (1, "execute", "COMMIT;", ()),
    ]
    script, transactions, statements = build_script(record)
    lines = script.splitlines()[1:]  # after the suffix variable
    assert lines == [
        "SELECT 1;",
        "BEGIN ISOLATION LEVEL READ COMMITTED;",
        "UPDATE b SET x = 2;",
        "COMMIT;",
        "BEGIN ISOLATION LEVEL READ COMMITTED;",
        "UPDATE a SET x = 1;",
        "COMMIT;",
    ]
    assert (transactions, statements) == (3, 7)
