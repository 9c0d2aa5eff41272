"""Probe: does an exponential moving average of the weights help one epoch of full SST-2?

    python bench/weight_averaging.py [--llrd 0.8] [--seed 1] [--threads 2]

A plain copy of tunelab's training loop (same data order, head rate, weight
decay groups, warm-up and clipping; `tunelab train` gives the same dev accuracy
at every evaluation) that also keeps EMAs of the weights with decays 0.99,
0.995 and 0.998 and evaluates the raw weights and each average every 500 steps.
Prints one JSON line per evaluation. Results are in BENCHMARKS.md.
"""
import argparse, json, math, os, time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
p=argparse.ArgumentParser()
p.add_argument("--lr",type=float,default=1e-4); p.add_argument("--head-lr",type=float,default=1e-3)
p.add_argument("--batch",type=int,default=32); p.add_argument("--llrd",type=float,default=1.0)
p.add_argument("--threads",type=int,default=1); p.add_argument("--limit",type=int)
p.add_argument("--seed",type=int,default=42); p.add_argument("--warmup",type=float,default=0.1)
p.add_argument("--data",default="../shared/data/sst2")
a=p.parse_args()
torch.set_num_threads(a.threads); torch.set_flush_denormal(True); torch.manual_seed(a.seed)
from tunelab.data import load_task_data, DataSpec
from tunelab.collate import encode_frame, make_loader, Collator
from tunelab.modeling import load_classifier, load_tokenizer, resolve_model
from tunelab.metrics import compute_metrics
from tunelab.train import _param_groups
from transformers import get_linear_schedule_with_warmup
spec=DataSpec(source=a.data+"/train.tsv",validation=a.data+"/dev.tsv",limit=a.limit,seed=a.seed)
data=load_task_data(spec); name=resolve_model(None); tok=load_tokenizer(name)
model=load_classifier(name,data.label_names)
col=Collator(tok.pad_token_id)
tl=make_loader(encode_frame(tok,data.train,128),a.batch,col,a.seed); vl=make_loader(encode_frame(tok,data.validation,128),128,col,shuffle=False)
groups=_param_groups(model,0.01,a.head_lr,a.lr,a.llrd)  # tunelab train's groups and rates
opt=torch.optim.AdamW(groups,lr=a.lr,fused=True)
total=len(tl); sch=get_linear_schedule_with_warmup(opt,math.ceil(a.warmup*total),total)
params=[p for p in model.parameters()]
decays=[0.99,0.995,0.998]
emas={d:[p.detach().clone() for p in params] for d in decays}
def evaluate(weights=None):
    if weights is not None:
        saved=[p.detach().clone() for p in params]
        with torch.no_grad():
            for p,w in zip(params,weights): p.copy_(w)
    model.eval(); L=[];Y=[]
    with torch.inference_mode():
        for b in vl: L.append(model(**b).logits.numpy()); Y.append(b["labels"].numpy())
    model.train()
    if weights is not None:
        with torch.no_grad():
            for p,w in zip(params,saved): p.copy_(w)
    return compute_metrics(np.concatenate(L),np.concatenate(Y),2)["accuracy"]
model.train(); t=time.time(); res={}
for step,b in enumerate(tl,1):
    loss=model(**b).loss; loss.backward()
    torch.nn.utils.clip_grad_norm_(params,1.0); opt.step(); sch.step(); opt.zero_grad()
    with torch.no_grad():
        for d in decays: torch._foreach_lerp_(emas[d],[p.detach() for p in params],1-d)
    if step%500==0 or step==total:
        r={"step":step,"raw":evaluate(),**{f"ema{d}":evaluate(emas[d]) for d in decays},"s":round(time.time()-t)}
        print(json.dumps(r),flush=True)
