#!/usr/bin/env python3
"""The shape ADR 0007 promises, checked in CI:
1. no import circle between the modules of any crate (a module is a file under `src/`; an
   edge is a `crate::`, `super::` or `self::` path outside comments and test modules);
2. no non-test source file over 600 lines unless its first line says why (`// long: …`).
Exits 1 and names what breaks the rule."""
import os,re,sys
root=sys.argv[1] if len(sys.argv)>1 else '.'
MAX_LINES=600
crates=[d for d in os.listdir(root) if os.path.isfile(os.path.join(root,d,'Cargo.toml')) and os.path.isdir(os.path.join(root,d,'src'))]
def modpath(src,f):
    rel=os.path.relpath(f,src)[:-3].split(os.sep)
    if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
    return tuple(rel)
found=False
for c in sorted(crates):
    src=os.path.join(root,c,'src')
    files=[os.path.join(dp,f) for dp,_,fs in os.walk(src) for f in fs if f.endswith('.rs')]
    mods={modpath(src,f):f for f in files}
    edges=set()
    for m,f in mods.items():
        text=re.sub(r'//[^\n]*','',open(f).read())
        # drop test modules
        text=re.split(r'#\[cfg\(test\)\]\s*mod tests\s*\{',text)[0]
        for path in re.findall(r'\b((?:crate|super|self)(?:::\w+)+)',text):
            parts=path.split('::')
            if parts[0]=='crate': target=list(parts[1:])
            else:
                base=list(m)
                i=0
                while parts[i] in ('super','self'):
                    if parts[i]=='super': base=base[:-1]
                    i+=1
                target=base+parts[i:]
            # longest prefix that is a module
            t=tuple(target)
            while t and t not in mods: t=t[:-1]
            if t!=m: edges.add((m,t))
    # cycles via DFS (Tarjan SCC)
    graph={m:set() for m in mods}
    for a,b in edges:
        # ancestors: a child using its parent's items is fine only if parent doesn't use child -> treat as edge anyway
        graph[a].add(b)
    index={};low={};stack=[];on=set();sccs=[];i=[0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v]=low[v]=i[0];i[0]+=1;stack.append(v);on.add(v)
        for w in graph[v]:
            if w not in index: strong(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=stack.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: sccs.append(comp)
    for v in graph:
        if v not in index: strong(v)
    for comp in sccs:
        # ignore cycles that exist only because a parent module re-exports (pub use) its children
        found=True
        print(c, 'cycle:', ' , '.join('::'.join(x) or '<root>' for x in comp))
for c in sorted(crates):
    src=os.path.join(root,c,'src')
    for dp,_,fs in os.walk(src):
        for f in fs:
            path=os.path.join(dp,f)
            if not f.endswith('.rs') or f=='tests.rs':
                continue
            lines=open(path).read().split('\n')
            if len(lines)>MAX_LINES and not lines[0].startswith('// long:'):
                found=True
                print(path, f'has {len(lines)} lines (over {MAX_LINES}) and no `// long:` reason on its first line')
if found: sys.exit(1)
print('structure: no import circle, no source file over', MAX_LINES, 'lines')
