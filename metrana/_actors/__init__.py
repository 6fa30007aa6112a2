"""The engine's actors. Each owns the sending end it writes to; shutdown travels downstream
as end-of-channel, and the close strategies are cancellation policies applied by the engine::

    caller threads          engine (one trio run: background thread, or the caller's nursery)
    ──────────────          ──────────────────────────────────────────────────────────────────
    log() ─► Inbox ─► pump ─► StepCounter ─► Batcher ─┬─► Dispatcher 0 ─┐
             (deque,          (assigns and   (groups   ├─► Dispatcher 1 ─┼─► httpx ─► /v1/runs:update
              lock,            checks steps)  by series,└─► Dispatcher N ─┘
              backpressure)        │          one lane          │
                                   ▼          per series)       ▼
                              ErrorCollector ◄──────────────────┘   (error strategy)
"""
