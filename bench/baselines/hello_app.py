"""The least a web service does before it answers: a FastAPI app with one route under uvicorn (bench/startup.py's
baseline). `python bench/baselines/hello_app.py <port>`."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
