"""What the command line shows, as library code: where the config is looked for and
what ``--backend`` means, tables for a terminal or a pipe, health in the formats
monitoring systems read, model listings with prices, one-shot prompts and the checks
of ``config validate --probe``. ``provider_agent.cli`` is a thin shell over these;
none of them imports click.
"""
