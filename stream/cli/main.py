"""The one CLI. Each subcommand is a thin wrapper in the module named for its area."""

from __future__ import annotations

import typer

from stream.cli import (
    alerts_cmd,
    dashboard_cmd,
    eval_signals,
    gateway_cmd,
    models_cmd,
    replay_cmd,
    services_cmd,
    verifier_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="vitalstream",
    help="Streaming patient monitoring: gateways -> Kafka -> Faust -> models -> alerts -> Redis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
eval_app = typer.Typer(help="Evaluate a stage on recordings; prints JSON.", no_args_is_help=True)
train_app = typer.Typer(help="Train the models on recordings.", no_args_is_help=True)

app.add_typer(services_cmd.app, name="services")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(dashboard_cmd.app, name="dashboard")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")

app.command("worker")(worker_cmd.worker)
app.command("demo")(worker_cmd.demo)
app.command("publish")(gateway_cmd.publish)
app.command("publish-alarm")(gateway_cmd.publish_alarm)
app.command("pseudonym")(gateway_cmd.pseudonym)
app.command("simulate")(gateway_cmd.simulate)
app.command("replay")(replay_cmd.replay)
app.command("validate")(replay_cmd.validate)

eval_app.command("peaks")(eval_signals.peaks)
eval_app.command("resp")(eval_signals.resp)
eval_app.command("beats")(models_cmd.eval_beats)
eval_app.command("rhythm")(models_cmd.eval_rhythm)
eval_app.command("rhythm-curve")(models_cmd.rhythm_curve)
train_app.command("beats")(models_cmd.train_beats)
train_app.command("sveb")(models_cmd.train_sveb)
train_app.command("rhythm")(models_cmd.train_rhythm)
train_app.command("verifier")(verifier_cmd.train_verifier)

if __name__ == "__main__":
    app()
