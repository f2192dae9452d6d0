"""The teacher: `client` talks to an OpenAI-compatible server, `probe` checks one, `budget`
fits a token budget to its context, `parsing` reads a completion, `grading` turns it into an
outcome, `vllm` starts vLLM for the configured teacher.

Submodules are imported where they are used: `distill teacher serve` must not load aiohttp."""
