"""The `unicorns` contract (datasets/unicorns.toml, the seed's Unicorn) as FastAPI users write
it: a pydantic v2 model with strict scalars and unknown fields forbidden. It validates and
answers, storing nothing: the oracle for the 422 bodies of sluice's collection API
(crates/api/tests/oracle.rs).

  uvicorn --app-dir crates/api/tests/oracle unicorns_fastapi:app --port PORT
"""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, List, Optional

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, StringConstraints

Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
Tag = Annotated[StrictStr, StringConstraints(min_length=1, max_length=32)]
Email = Annotated[StrictStr, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class Color(str, Enum):
    white = "white"
    black = "black"
    silver = "silver"
    gold = "gold"
    pink = "pink"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Annotated[StrictFloat, Field(ge=-90, le=90)]
    lon: Annotated[StrictFloat, Field(ge=-180, le=180)]


class Unicorn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    rainbow: StrictBool
    color: Color
    horn_length_cm: Annotated[StrictFloat, Field(gt=0, le=200)]
    age_years: Annotated[StrictInt, Field(ge=0, le=10000)]
    sighted_at: dt.datetime
    location: Location
    tags: Annotated[List[Tag], Field(max_length=10)] = []
    observer_email: Optional[Email] = None


Batch = Annotated[List[Unicorn], Field(min_length=1, max_length=500)]

app = FastAPI()


@app.post("/unicorns", status_code=201)
def post_unicorn(body: Unicorn):
    return {"accepted": 1}


@app.post("/unicorns/batch", status_code=201)
def post_unicorns(body: Batch):
    return {"accepted": len(body)}
