"""provider_agent: one blocking API over local and remote LLM inference backends.

The library lives in ``provider_agent.backend``; ``provider_agent.scan`` probes many
backends at once; the ``provider-agent`` command (``provider_agent.cli``) fronts both.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
