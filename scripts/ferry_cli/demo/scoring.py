"""Chapter 3: applications are scored over the HTTP API, and bad requests are refused."""

from __future__ import annotations

from rich.table import Table

from ferry_cli.demo.context import MODEL, DemoContext, Step, expect


def steps(ctx: DemoContext) -> list[Step]:
    """Score five applications (one clipped with a warning), then refuse six bad requests."""
    from ferry_core.onboarding.builder import generate_credit_data, records

    console = ctx.console

    def score() -> str:
        rows_ = records(generate_credit_data(5, seed=99), ctx.built.schema)
        rows_[0]["debt_to_income"] = 3.7  # above the schema's 2.0: clipped with a warning
        status, body = ctx.http("POST", f"/v1/models/{MODEL}/predict", {"instances": rows_})
        expect(status == 200, f"expected 200, got {status}: {body}")
        t = Table(
            "#", "age", "income", "purpose", "dti", "score", "label", "warnings",
            title=f"POST /v1/models/{MODEL}/predict → 200 (v{body['version']})",
        )  # fmt: skip
        for i, (r, p) in enumerate(zip(rows_, body["predictions"], strict=True)):
            t.add_row(
                str(i), str(r["age"]), str(r["annual_income"]), str(r["purpose"]),
                str(r["debt_to_income"]), f"{p['score']:.4f}", str(p["label"]),
                "; ".join(w["message"] for w in p["warnings"]),
            )  # fmt: skip
        console.print(t)
        expect(len(body["predictions"]) == 5, "missing predictions")
        expect(bool(body["predictions"][0]["warnings"]), "the clipped value has no warning")
        return f"5 applications scored over HTTP by v{body['version']}, one clipped with a warning"

    def refuse() -> str:
        good = records(generate_credit_data(1, seed=5), ctx.built.schema)[0]
        predict = f"/v1/models/{MODEL}/predict"
        cases = [
            ("wrong type, unknown category, unknown field", "POST", predict,
             {"instances": [{**good, "age": "forty", "purpose": "yacht", "colour": "red"}]},
             "", 422),
            ("out of range and missing", "POST", predict,
             {"instances": [{k: v for k, v in {**good, "age": 130}.items() if k != "employment"}]},
             "", 422),
            ("not JSON", "POST", predict, "{oops", "", 400),
            ("1,001 instances", "POST", predict, {"instances": [good] * 1001}, "", 400),
            ("unknown model", "POST", "/v1/models/no-such-model/predict",
             {"instances": [good]}, "", 404),
            ("unknown version", "GET", f"/v1/models/{MODEL}", None, "version=99", 404),
        ]  # fmt: skip
        t = Table("request", "status", "error", "details", title="bad requests get clear errors")
        for label, method, path, body, query, want in cases:
            status, resp = ctx.http(method, path, body, query)
            details = "\n".join(
                f"[{d.get('instance')}] {d['field']}: {d['problem']} — {d['message']}"
                for d in resp.get("details", [])
            )
            t.add_row(label, str(status), f"{resp.get('error')}: {resp.get('message')}", details)
            expect(
                status == want and set(resp) == {"error", "message", "details"},
                f"{label}: expected {want}, got {status} {resp}",
            )
        status, resp = ctx.http("POST", predict, {"instances": [good]}, signed=False)
        t.add_row(
            "unsigned (no SigV4: refused by the gateway)", str(status), resp.get("message"), ""
        )
        expect(
            (status, resp) == (403, {"message": "Forbidden"}),
            f"an unsigned predict: expected 403 Forbidden, got {status} {resp}",
        )
        console.print(t)
        return (
            f"{len(cases)} bad requests refused over HTTP with the documented error shape, "
            "and an unsigned one by the gateway"
        )

    return [
        ("Score applications over the HTTP API", score),
        ("Refuse bad requests", refuse),
    ]
