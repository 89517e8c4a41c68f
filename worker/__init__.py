"""The RQ side of Releasegate: queues, jobs and the worker process."""
