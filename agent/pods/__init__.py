"""The agent's pod lifecycle engine: the manager (this node's pods), one worker per pod uid,
the libpod specs made for a Pod, and the status reported for it."""
