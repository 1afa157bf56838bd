"""A deployment of the site: its build id, its JS chunks, and the server actions they reference.

Next.js gives every server action an id that changes with each build, and the only place a client
can learn it is the minified chunk that calls ``createServerReference``. A new build therefore
breaks a client that remembered old ids (they get 404), which is what ``rotate`` simulates; build
state "missing" simulates a release that moved the upload actions out of reach.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

UPLOAD_ACTIONS = ("generateUploadUrl", "getSignedUrl")
OTHER_ACTIONS = ("updateTouConsent", "dismissAnnouncement")
_ID_CHARS = string.ascii_letters + string.digits + "_-"


@dataclass(frozen=True)
class Build:
    build_id: str
    action_ids: dict[str, str]  # action name -> 42 hex chars
    chunks: tuple[str, str, str]  # paths under /_next/static/chunks/<build_id>/: webpack, actions, page
    actions_present: bool = True

    @classmethod
    def new(cls, actions_present: bool = True) -> Build:
        number = secrets.randbelow(9000) + 1000
        return cls(build_id="".join(secrets.choice(_ID_CHARS) for _ in range(21)),
                   action_ids={name: secrets.token_hex(21) for name in UPLOAD_ACTIONS + OTHER_ACTIONS},
                   chunks=(f"webpack-{secrets.token_hex(8)}.js", f"{number}-{secrets.token_hex(8)}.js",
                           f"app/page-{secrets.token_hex(8)}.js"),
                   actions_present=actions_present)

    def with_actions(self, present: bool) -> Build:
        return Build(self.build_id, self.action_ids, self.chunks, present)

    def chunk_urls(self) -> list[str]:
        return [f"/_next/static/chunks/{self.build_id}/{name}" for name in self.chunks]

    def action_named(self, action_id: str) -> str | None:
        """The action an id names in this build; upload actions only while present."""
        for name, known in self.action_ids.items():
            if known == action_id and (self.actions_present or name not in UPLOAD_ACTIONS):
                return name
        return None

    def chunk_source(self, path: str) -> str | None:
        """The JS of ``<build_id>/<chunk>``, or None when this build has no such chunk."""
        build_id, _, name = path.partition("/")
        if build_id != self.build_id or name not in self.chunks:
            return None
        if name == self.chunks[0]:
            return _WEBPACK
        if name == self.chunks[2]:
            return _PAGE
        names = [n for n in self.action_ids if self.actions_present or n not in UPLOAD_ACTIONS]
        exports = ",".join(f"{n}:()=>{_var(i)}" for i, n in enumerate(names))
        refs = ",".join(f'{_var(i)}=(0,n.createServerReference)("{self.action_ids[n]}",n.callServer,void 0,'
                        f'n.findSourceMapURL,"{n}")' for i, n in enumerate(names))
        return ('"use strict";(self.webpackChunk_N_E=self.webpackChunk_N_E||[]).push([[5093],{61834:(e,t,r)=>{'
                f"r.d(t,{{{exports}}});var n=r(35236);let {refs}}},35236:(e,t,r)=>{{r.d(t,{{callServer:()=>o,"
                "createServerReference:()=>i,findSourceMapURL:()=>s});let o=async(e,t)=>{throw Error(\"sim\")},"
                "i=(e,t)=>t,s=void 0}}]);\n")


def _var(i: int) -> str:
    return "soalcuf"[i % 7] + ("" if i < 7 else str(i))


_WEBPACK = ('(()=>{"use strict";var e={},t={};function r(o){var n=t[o];if(void 0!==n)return n.exports;'
            "var a=t[o]={exports:{}},l=!0;try{e[o](a,a.exports,r),l=!1}finally{l&&delete t[o]}return a.exports}"
            "r.m=e,r.d=(e,t)=>{for(var o in t)r.o(t,o)&&!r.o(e,o)&&Object.defineProperty(e,o,{enumerable:!0,"
            "get:t[o]})},r.o=(e,t)=>Object.prototype.hasOwnProperty.call(e,t),self.__webpack_require__=r})();\n")

_PAGE = ('"use strict";(self.webpackChunk_N_E=self.webpackChunk_N_E||[]).push([[8974],{47320:(e,t,r)=>{'
         'r.r(t),r.d(t,{default:()=>a});var n=r(95155),l=r(12115);function a(e){let{initialModels:t}=e,'
         '[r,o]=(0,l.useState)(null);return(0,n.jsx)("div",{className:"flex h-full flex-col",children:t.length})}'
         "}},e=>{e.O(0,[5093,441,1684,7358],()=>e(e.s=47320)),_N_E=e.O()}]);\n")
