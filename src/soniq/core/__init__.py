"""The job registry: what ``@app.job()`` declares and the worker runs."""
