#!/usr/bin/env python3
"""Start S3 (SeaweedFS), PostgreSQL and Label Studio on 127.0.0.1 for trying the annotation loop.

Loads examples/data/tickets.csv into a `tickets` table, creates the `skitflow-demo` bucket, writes
the environment to runs/demo.env, and keeps the servers up until Ctrl-C. Install the servers first
with scripts/install-services.sh. Usage:

    .venv/bin/python scripts/demo-services.py      # in one terminal
    source runs/demo.env                            # in another, then run the recipes
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.services import start_labelstudio_server, start_postgres_server, start_s3_server  # noqa: E402


def main() -> None:
    import pandas as pd
    from sqlalchemy import create_engine

    with contextlib.ExitStack() as stack:
        print("starting S3, PostgreSQL and Label Studio (Label Studio takes ~30 s the first time)")
        s3 = stack.enter_context(start_s3_server())
        postgres = stack.enter_context(start_postgres_server())
        labelstudio = stack.enter_context(start_labelstudio_server())
        s3.create_bucket("skitflow-demo")
        engine = create_engine(postgres.url)
        with engine.begin() as connection:
            tickets = pd.read_csv(REPO / "examples" / "data" / "tickets.csv").drop(columns=["label"])
            tickets.to_sql("tickets", connection, if_exists="replace", index=False)
        engine.dispose()
        environ = {
            **s3.env(),
            "DATABASE_URL": postgres.url,
            "LABEL_STUDIO_URL": labelstudio.url,
            "LABEL_STUDIO_API_KEY": labelstudio.token,
        }
        env_file = REPO / "runs" / "demo.env"
        env_file.parent.mkdir(exist_ok=True)
        env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(environ.items())))
        env_file.chmod(0o600)
        print(f"ready. In another shell: source {env_file.relative_to(REPO)}")
        print(f"Label Studio UI: {labelstudio.url} (user {labelstudio.username}, password {labelstudio.password})")
        print("Ctrl-C stops the servers and deletes their data.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
