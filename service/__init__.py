"""The long-running service and what people read: `--serve`'s scheduler and `--health`
(`serve`), notifications (`notify`), the status page (`status`), the cycle summary and a
district's report (`report`), the log line (`logs`). The web pages go here too. Imports
`runner/`, `jobs/`, `storage/`, `config/`, `models/`, `analytics/`; never `lifecycle/` or
`trigger`.
"""
