"""Daily orders report: daily_report.ipynb as a script, exported by orion-nb.

Notebook: daily_report.ipynb (sha256 b7b55265e7b14e84)
Flow: 'daily_report.ipynb' runs the code cells in order; its %%flow cell runs as a subflow.
Parameters: region="eu", days=2, out_dir="reports"
Schedule: cron '0 6 * * *' (Europe/Paris)

    python daily_report.py [--param NAME=VALUE ...]   run once
    python daily_report.py --serve [--catch-up]       run on this schedule

Unlike in the notebook, a shell command (!cmd) that fails stops the run, and
display() prints a plain-text representation.
"""

import csv
import random
from pathlib import Path

import orion_nb  # was %load_ext orion_nb
from orion_nb import flow, task
from orion_nb.export.runtime import command_line, display, shell

# The notebook's parameters: the defaults of each run of main().
region = "eu"
days = 2
out_dir = "reports"


@flow(name="daily_report.ipynb")
def main(region: str = region, days: int = days, out_dir: str = out_dir) -> None:
    """Run daily_report.ipynb: set its parameters, then run its code cells in order."""
    # each run's values are module-level names, as in the notebook
    globals().update(region=region, days=days, out_dir=out_dir)
    run_cells()


def run_cells() -> None:
    """The code cells in order; names they bind at top level are module-level names."""
    global day, f, fetch_orders, path, summarise, totals, writer

    # # Daily orders report
    #
    # Reads the day's orders for a region, summarises them per product and writes a CSV. It is meant to run every morning: `orion-nb export daily_report.ipynb --cron '0 6 * * *'` turns it into a script, and `orion-nb serve` runs it on schedule (see the docs page *From notebook to schedule*).

    # The parameters (papermill's convention: the cell is tagged `parameters`). `orion-nb run daily_report.ipynb --param region=us` or `python daily_report.py --param region=us` override them.

    # %% cell 4
    # parameter region: its value comes from main()
    # parameter days: its value comes from main()
    # parameter out_dir: its value comes from main()

    # %% cell 5
    @task(retries=2, retry_delay_seconds=0)
    def fetch_orders(region: str, day: int) -> list[dict]:
        rng = random.Random(f"{region}-{day}")
        return [
            {
                "product": rng.choice(["tea", "coffee", "cocoa"]),
                "amount": rng.randint(1, 9),
            }
            for _ in range(20)
        ]

    @task
    def summarise(orders: list[dict]) -> dict[str, int]:
        totals: dict[str, int] = {}
        for order in orders:
            totals[order["product"]] = totals.get(order["product"], 0) + order["amount"]
        return dict(sorted(totals.items()))

    # The report itself is one `%%flow` cell: a recorded flow run with a task run per day and per summary.

    # %% cell 7: %%flow daily-report --retries 1
    @flow(name="daily-report", retries=1)
    def daily_report():
        global summaries
        summaries = [summarise(fetch_orders(region, day)) for day in range(days)]
        return summaries[-1]

    display(daily_report())

    # %% cell 8
    Path(out_dir).mkdir(exist_ok=True)
    path = Path(out_dir) / f"{region}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["day", "product", "amount"])
        for day, totals in enumerate(summaries):
            writer.writerows(
                [day, product, amount] for product, amount in totals.items()
            )
    shell("wc -l {path}")

    # %% cell 9
    display(
        orion_nb.flow_runs(flow_name="daily-report")[
            ["name", "state_name", "parameters"]
        ].head(3)
    )


if __name__ == "__main__":
    command_line(main, cron="0 6 * * *", timezone="Europe/Paris")
