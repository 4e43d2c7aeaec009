// The storefront page: plain ES module, talks only to the public GraphQL API at /graphql.
import { gql, gqlUpload, ApiError, describeError } from './api.js';
import { DEFAULT_MODEL_SIZE, downsizeForUpload } from './downsize.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const CARD = `fragment Card on Product { id sku title category brand price currency inStock thumbnailUrl imageUrl }`;
const Q = {
  model: `query Model { embeddingModel { id dimension imageSize provider active } }`,
  categories: `query Categories($after: String) { products(first: 500, after: $after) { edges { node { category } } pageInfo { hasNextPage endCursor } } }`,
  browse: `${CARD} query Browse($filter: ProductFilter, $first: Int, $after: String) { products(filter: $filter, first: $first, after: $after) { totalCount edges { node { ...Card } } pageInfo { hasNextPage endCursor } } }`,
  image: `${CARD} query ByImage($image: ImageInput!, $region: RegionInput, $filter: ProductFilter, $k: Int) { similarProducts(image: $image, region: $region, filter: $filter, k: $k) { score matchedImage { id label thumbnailUrl } product { ...Card } } }`,
  text: `${CARD} query ByText($text: String!, $filter: ProductFilter, $k: Int) { searchProducts(text: $text, filter: $filter, k: $k) { score matchedImage { id label thumbnailUrl } product { ...Card } } }`,
  // a photo refined with words (issue 24): one composed query, the photo's term first
  composed: `${CARD} query Refined($query: ComposedQuery, $filter: ProductFilter, $k: Int) { similarProducts(query: $query, filter: $filter, k: $k) { score matchedImage { id label thumbnailUrl } product { ...Card } } }`,
  recommend: `${CARD} query Recommend($positive: [ID!]!, $negative: [ID!], $filter: ProductFilter, $k: Int) { recommendProducts(positive: $positive, negative: $negative, filter: $filter, k: $k) { score matchedImage { id label thumbnailUrl } product { ...Card } } }`,
  classify: `query Likely($image: ImageInput!, $labels: [String!]!) { classifyImage(image: $image, labels: $labels) { labels { label score probability } } }`,
  // every model the service has ready (the active one first): the public API picks them, the page needs no list
  // (the product's fields listed inline: a fragment spread there would pass the API's depth limit of 6)
  compare: `query Compare($image: ImageInput, $text: String, $filter: ProductFilter, $k: Int) { compareModels(image: $image, text: $text, filter: $filter, k: $k) { k results { model active dimension matches { score product { id sku title category brand price currency inStock thumbnailUrl imageUrl } } } overlap { models shared jaccard rankCorrelation } sharedByAll } }`,
};

/**
 * What the grid shows: the catalog, products like a photo (refined with words), like a text, like a
 * product, or like the products a shopper marked "more like this" and unlike those marked "not like this".
 * A photo keeps the shopper's file (the preview) and what is uploaded: the same photo made smaller in the
 * browser (downsize.js), once, however many searches it then takes (filters, areas, refinements, compare).
 * @type {{ kind: 'browse' } | { kind: 'photo', file: File, upload: Promise<Blob>, refine?: string } | { kind: 'text', text: string } | { kind: 'similar', product: any } | { kind: 'recommend', positive: any[], negative: any[] }}
 */
let query = { kind: 'browse' };
/** The matches the grid shows (a "not like this" before any "more like this" starts from the best of them). */
let shown = [];
/** recommendProducts takes at most this many examples each side. */
const MAX_EXAMPLES = 16;
/** The model's input size (embeddingModel.imageSize) once known: how small the uploaded photo may get. */
let modelImageSize = DEFAULT_MODEL_SIZE;
let previewUrl = null;
let inflight = null; // AbortController of the current request
let seq = 0;
/** Browsing: where the next page starts (null: no more), and how many are shown. */
let nextCursor = null;

const el = {
  photo: /** @type {HTMLInputElement} */ ($('photo')),
  preview: /** @type {HTMLImageElement} */ ($('photo-preview')),
  drop: $('drop'),
  q: /** @type {HTMLInputElement} */ ($('q')),
  textForm: /** @type {HTMLFormElement} */ ($('text-form')),
  filterForm: /** @type {HTMLFormElement} */ ($('filter-form')),
  filters: /** @type {HTMLDetailsElement} */ ($('filters')),
  category: /** @type {HTMLSelectElement} */ ($('category')),
  minPrice: /** @type {HTMLInputElement} */ ($('min-price')),
  maxPrice: /** @type {HTMLInputElement} */ ($('max-price')),
  inStock: /** @type {HTMLInputElement} */ ($('in-stock')),
  k: /** @type {HTMLSelectElement} */ ($('k')),
  title: $('results-title'),
  queryThumb: /** @type {HTMLImageElement} */ ($('query-thumb')),
  clear: $('clear-query'),
  status: $('status'),
  error: $('error'),
  grid: $('results'),
  more: $('more'),
  model: $('model'),
  notice: $('model-notice'),
  compareMode: /** @type {HTMLInputElement} */ ($('compare-mode')),
  compare: $('compare'),
  overlap: $('overlap'),
  cols: $('compare-cols'),
  refineForm: /** @type {HTMLFormElement} */ ($('refine-form')),
  refine: /** @type {HTMLInputElement} */ ($('refine')),
  likely: $('likely'),
  likelyList: $('likely-list'),
};

// Models are compared on one photo, text or product; not on a refined photo or on marked examples.
const comparing = () =>
  el.compareMode.checked && query.kind !== 'browse' && query.kind !== 'recommend' && !(query.kind === 'photo' && query.refine);

// ---------- filters ----------

function currentFilter() {
  /** @type {Record<string, unknown>} */
  const f = {};
  if (el.category.value) f.category = el.category.value;
  const min = el.minPrice.value.trim();
  const max = el.maxPrice.value.trim();
  if (min !== '') f.minPrice = Number(min);
  if (max !== '') f.maxPrice = Number(max);
  if (el.inStock.checked) f.inStock = true;
  return Object.keys(f).length ? f : null;
}

const currentK = () => Number(el.k.value) || 24;

// ---------- running a query ----------

async function run() {
  inflight?.abort();
  const controller = new AbortController();
  inflight = controller;
  const mine = ++seq;
  const filter = currentFilter();
  const k = currentK();
  setLoading(true);
  showError(null);
  nextCursor = null;
  el.more.hidden = true;
  try {
    let items;
    let total = null;
    if (query.kind === 'browse') {
      const data = await gql(Q.browse, { filter, first: Math.min(k, 500) }, controller.signal);
      items = data.products.edges.map((e) => ({ product: e.node, score: null }));
      total = data.products.totalCount;
      if (mine === seq) nextCursor = data.products.pageInfo.hasNextPage ? data.products.pageInfo.endCursor : null;
    } else if (comparing()) {
      const image = query.kind === 'photo' ? { file: null } : query.kind === 'similar' ? { productId: query.product.id } : undefined;
      const vars = { ...(image ? { image } : { text: query.text }), filter, k };
      const data =
        query.kind === 'photo'
          ? await gqlUpload(Q.compare, vars, { 'variables.image.file': await query.upload }, controller.signal)
          : await gql(Q.compare, vars, controller.signal);
      if (mine !== seq) return;
      renderCompare(data.compareModels);
      return;
    } else if (query.kind === 'photo' && query.refine) {
      // The photo (its area, if drawn) and the words as one composed query: the photo's term is the file.
      const terms = [{ image: { file: null }, ...(region ? { region } : {}), weight: 1 }, ...refineTerms(query.refine)];
      const data = await gqlUpload(
        Q.composed,
        { query: { terms }, filter, k },
        { 'variables.query.terms.0.image.file': await query.upload },
        controller.signal,
      );
      items = data.similarProducts;
    } else if (query.kind === 'recommend') {
      const ids = (list) => list.map((p) => p.id);
      const data = await gql(Q.recommend, { positive: ids(query.positive), negative: ids(query.negative), filter, k }, controller.signal);
      items = data.recommendProducts;
    } else if (query.kind === 'photo') {
      const data = await gqlUpload(
        Q.image,
        { image: { file: null }, ...(region ? { region } : {}), filter, k },
        { 'variables.image.file': await query.upload },
        controller.signal,
      );
      items = data.similarProducts;
    } else if (query.kind === 'text') {
      const data = await gql(Q.text, { text: query.text, filter, k }, controller.signal);
      items = data.searchProducts;
    } else {
      // one more than shown: the product itself is its own nearest neighbour
      const source = query.product;
      const data = await gql(Q.image, { image: { productId: source.id }, filter, k: k + 1 }, controller.signal);
      items = data.similarProducts.filter((m) => m.product.id !== source.id).slice(0, k);
    }
    if (mine !== seq) return;
    render(items, { total });
    el.more.hidden = nextCursor == null;
  } catch (err) {
    if (mine !== seq || (err instanceof DOMException && err.name === 'AbortError')) return;
    render([], { silent: true });
    showError(err instanceof ApiError ? describeError(err) : describeError(new ApiError('NETWORK', String(err))));
  } finally {
    if (mine === seq) setLoading(false);
  }
}

function setLoading(on) {
  el.grid.setAttribute('aria-busy', String(on));
  el.compare.setAttribute('aria-busy', String(on));
  document.body.classList.toggle('loading', on);
  if (on) el.status.innerHTML = `<span class="spinner" aria-hidden="true"></span> ${query.kind === 'browse' ? 'Loading…' : 'Searching…'}`;
}

function showError(message) {
  el.error.hidden = !message;
  el.error.textContent = message ?? '';
}

// ---------- rendering ----------

const money = new Map();
function formatPrice(price, currency) {
  if (price == null) return 'Price on request';
  const c = currency || 'EUR';
  if (!money.has(c)) {
    try {
      money.set(c, new Intl.NumberFormat(undefined, { style: 'currency', currency: c }));
    } catch {
      money.set(c, { format: (v) => `${v.toFixed(2)} ${c}` });
    }
  }
  return money.get(c).format(price);
}

function heading() {
  if (comparing()) return `Models compared: ${baseHeading().replace(/^./, (c) => c.toLowerCase())}`;
  return baseHeading();
}

function baseHeading() {
  switch (query.kind) {
    case 'browse':
      return 'Catalog';
    case 'photo':
      return query.refine ? `Products like your photo, refined: “${query.refine}”` : 'Products like your photo';
    case 'recommend': {
      const names = (list) => (list.length === 1 ? list[0].title : `${list.length} products`);
      return `More like ${names(query.positive)}${query.negative.length ? `, not like ${names(query.negative)}` : ''}`;
    }
    case 'text':
      return `Results for “${query.text}”`;
    case 'similar':
      return `Similar to ${query.product.title}`;
  }
}

function renderHead() {
  el.title.textContent = heading();
  el.refineForm.hidden = query.kind !== 'photo';
  el.clear.hidden = query.kind === 'browse';
  const thumb =
    query.kind === 'similar' ? (query.product.thumbnailUrl ?? query.product.imageUrl) : query.kind === 'photo' ? previewUrl : null;
  el.queryThumb.hidden = !thumb;
  if (thumb) el.queryThumb.src = thumb;
  else el.queryThumb.removeAttribute('src');
}

/**
 * @param {Array<{ product: any, score: number | null }>} items
 * @param {{ silent?: boolean, total?: number | null }} [opts]
 */
function render(items, opts = {}) {
  renderHead();
  el.compare.hidden = true;
  el.grid.hidden = false;
  el.cols.replaceChildren();
  el.overlap.replaceChildren();
  shown = items;
  el.grid.replaceChildren(...items.map(card));
  if (opts.silent) {
    el.status.textContent = '';
  } else if (items.length === 0) {
    el.status.textContent = '';
    showError(
      currentFilter()
        ? 'Nothing found with these filters. Try another category, a wider price range, or clear the filters.'
        : 'Nothing found. The catalog may be empty.',
    );
  } else {
    const [one, many] = query.kind === 'browse' ? ['product', 'products'] : ['match', 'matches'];
    const n = opts.total != null && opts.total > items.length ? `${items.length} of ${opts.total}` : String(items.length);
    el.status.textContent = `${n} ${(opts.total ?? items.length) === 1 ? one : many}`;
    if (el.compareMode.checked && query.kind === 'browse')
      el.status.textContent += ' · to compare models, drop a photo, type a text or choose a product';
  }
}

// ---------- the compare view: one column per model ----------

const MARKS = 8; // distinct mark colours (styles.css .mark-0 … .mark-7); past that they repeat, the numbers do not

/**
 * compareModels' answer: the overlap figures, then a column per model with its ranked matches. A product
 * that two or more models returned carries the same numbered, coloured mark in every column it is in.
 * @param {{ k: number, results: Array<{ model: string, active: boolean, dimension: number, matches: Array<{ score: number, product: any }> }>, overlap: Array<{ models: string[], shared: string[], jaccard: number, rankCorrelation: number | null }>, sharedByAll: string[] }} c
 */
function renderCompare(c) {
  renderHead();
  el.grid.hidden = true;
  el.grid.replaceChildren();
  el.compare.hidden = false;

  /** product id → the columns (model, rank) that returned it */
  const seen = new Map();
  for (const r of c.results) {
    r.matches.forEach((m, i) => {
      const list = seen.get(m.product.id) ?? [];
      list.push({ model: r.model, rank: i + 1 });
      seen.set(m.product.id, list);
    });
  }
  // marks numbered in the first column's order, then the next column's, …
  const marks = new Map();
  for (const r of c.results)
    for (const m of r.matches) if (seen.get(m.product.id).length >= 2 && !marks.has(m.product.id)) marks.set(m.product.id, marks.size);
  const inAll = new Set(c.sharedByAll);

  el.overlap.replaceChildren(overlapTable(c));
  el.cols.replaceChildren(
    ...c.results.map((r) => {
      const col = document.createElement('section');
      col.className = 'compare-col';
      col.dataset.model = r.model;
      const h = document.createElement('h2');
      h.className = 'compare-model';
      const name = document.createElement('span');
      name.className = 'model-name';
      name.textContent = r.model;
      h.append(name);
      if (r.active) {
        const b = document.createElement('span');
        b.className = 'chip active-model';
        b.textContent = 'active';
        h.append(b);
      }
      const sub = document.createElement('p');
      sub.className = 'compare-sub';
      const mine = r.matches.filter((m) => marks.has(m.product.id)).length;
      sub.textContent = `${r.matches.length} ${r.matches.length === 1 ? 'match' : 'matches'} · ${mine} shared · ${r.dimension}-d`;
      const ol = document.createElement('ol');
      ol.className = 'compare-list';
      r.matches.forEach((m, i) =>
        ol.append(compareItem(m, i + 1, r.model, marks.get(m.product.id), seen.get(m.product.id), inAll.has(m.product.id))),
      );
      col.append(h, sub, ol);
      return col;
    }),
  );
  const n = c.results.length;
  el.status.textContent = `${n} models · top ${c.k} each · ${c.sharedByAll.length} in every model's top ${c.k}`;
}

function overlapTable(c) {
  const table = document.createElement('table');
  table.className = 'overlap-table';
  const caption = document.createElement('caption');
  caption.textContent = `How far the models agree on their top ${c.k}`;
  const head = document.createElement('tr');
  for (const t of ['Models', 'Shared', `Jaccard@${c.k}`, 'Rank correlation']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = t;
    head.append(th);
  }
  const thead = document.createElement('thead');
  thead.append(head);
  const tbody = document.createElement('tbody');
  for (const o of c.overlap) {
    const tr = document.createElement('tr');
    tr.className = 'overlap-pair';
    tr.dataset.models = o.models.join(' ');
    const cells = [
      o.models.join(' vs '),
      String(o.shared.length),
      o.jaccard.toFixed(2),
      o.rankCorrelation == null ? '—' : o.rankCorrelation.toFixed(2),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) td.scope = 'row';
      td.textContent = text;
      if (i === 2) td.className = 'jaccard';
      if (i === 3) td.className = 'rank-correlation';
      tr.append(td);
    });
    tbody.append(tr);
  }
  table.append(caption, thead, tbody);
  const note = document.createElement('p');
  note.className = 'hint';
  note.textContent =
    'Jaccard: shared products over all products the two returned (1 = the same). Rank correlation: whether they order the shared ones alike (1 = the same order, — under two shared).';
  const wrap = document.createElement('div');
  wrap.append(table, note);
  return wrap;
}

/**
 * @param {{ score: number, product: any }} match
 * @param {number} rank
 * @param {string} model this column's model
 * @param {number | undefined} mark the shared product's number (undefined: only this model returned it)
 * @param {Array<{ model: string, rank: number }>} where every column that returned it
 * @param {boolean} everywhere whether every model returned it
 */
function compareItem({ score, product }, rank, model, mark, where, everywhere) {
  const li = document.createElement('li');
  li.className = 'compare-item';
  li.dataset.sku = product.sku;
  li.dataset.productId = product.id;
  li.dataset.rank = String(rank);
  if (mark !== undefined) {
    li.classList.add('shared', `mark-${mark % MARKS}`);
    li.dataset.mark = String(mark + 1);
    if (everywhere) li.classList.add('in-all');
  }
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'compare-hit';
  btn.addEventListener('click', () => showSimilar(product));
  const r = document.createElement('span');
  r.className = 'rank';
  r.textContent = String(rank);
  const src = product.thumbnailUrl ?? product.imageUrl;
  const media = document.createElement('span');
  media.className = 'thumb';
  if (src) {
    const img = document.createElement('img');
    img.src = src;
    img.alt = '';
    img.loading = 'lazy';
    img.width = 72;
    img.height = 72;
    media.append(img);
  }
  const body = document.createElement('span');
  body.className = 'compare-body';
  const title = document.createElement('span');
  title.className = 'card-title';
  title.textContent = product.title;
  const s = document.createElement('span');
  s.className = 'score-value';
  s.textContent = `score ${score.toFixed(3)}`;
  body.append(title, s);
  btn.append(r, media, body);
  if (mark !== undefined) {
    const badge = document.createElement('span');
    badge.className = 'mark';
    badge.textContent = String(mark + 1);
    const others = where.filter((w) => w.model !== model);
    const label = everywhere ? 'in every model' : `also in ${others.map((w) => `${w.model} at ${w.rank}`).join(', ')}`;
    badge.title = everywhere ? `Shared product ${mark + 1}: in every model's results` : `Shared product ${mark + 1}: ${label}`;
    const hidden = document.createElement('span');
    hidden.className = 'visually-hidden';
    hidden.textContent = ` (shared, ${label})`;
    btn.append(badge, hidden);
  }
  li.append(btn);
  return li;
}

// Pointing at a shared product lights it up in every column.
for (const type of ['mouseover', 'focusin']) {
  el.cols.addEventListener(type, (e) => {
    const item = /** @type {HTMLElement} */ (e.target).closest?.('.compare-item.shared');
    for (const x of el.cols.querySelectorAll('.compare-item.lit')) x.classList.remove('lit');
    if (!item) return;
    for (const x of el.cols.querySelectorAll('.compare-item')) if (x.dataset.productId === item.dataset.productId) x.classList.add('lit');
  });
}

/** @param {{ product: any, score: number | null, matchedImage?: { id: string, label: string | null, thumbnailUrl: string } | null }} item */
function card({ product, score, matchedImage }) {
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.sku = product.sku;
  li.dataset.category = product.category;

  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'card-hit';
  btn.addEventListener('click', () => showSimilar(product));

  // A search result shows the photo that matched (a product has several: the side view a shopper's
  // photo found, not always the first one).
  const src = matchedImage?.thumbnailUrl ?? product.thumbnailUrl ?? product.imageUrl;
  if (matchedImage) li.dataset.matchedImage = matchedImage.id;
  const media = document.createElement('span');
  media.className = 'media';
  if (src) {
    const img = document.createElement('img');
    img.src = src;
    img.alt = '';
    img.loading = 'lazy';
    img.decoding = 'async';
    img.width = 256;
    img.height = 256;
    media.append(img);
  } else {
    media.classList.add('no-image');
    media.textContent = 'No image';
  }
  btn.append(media);

  const body = document.createElement('span');
  body.className = 'card-body';
  const title = document.createElement('span');
  title.className = 'card-title';
  title.textContent = product.title;
  const price = document.createElement('span');
  price.className = 'price';
  price.textContent = formatPrice(product.price, product.currency);
  const meta = document.createElement('span');
  meta.className = 'meta';
  const cat = document.createElement('span');
  cat.className = 'chip category';
  cat.textContent = product.category;
  meta.append(cat);
  if (!product.inStock) {
    const out = document.createElement('span');
    out.className = 'chip out';
    out.textContent = 'Out of stock';
    meta.append(out);
  }
  body.append(title, price, meta);
  if (score != null) {
    const s = document.createElement('span');
    s.className = 'score';
    const pct = Math.max(0, Math.min(1, score));
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.style.width = `${(pct * 100).toFixed(1)}%`; // CSSOM, allowed by the page's CSP (no inline style attributes)
    bar.append(fill);
    s.append(bar);
    const label = document.createElement('span');
    label.className = 'score-value';
    label.textContent = `score ${score.toFixed(3)}`;
    s.append(label);
    body.append(s);
  }
  const hint = document.createElement('span');
  hint.className = 'visually-hidden';
  hint.textContent = ' (show similar products)';
  body.append(hint);
  btn.append(body);
  li.append(btn);
  if (query.kind !== 'browse') li.append(cardTools(product));
  return li;
}

/** "More like this" / "Not like this" under a search result: recommendations from the products marked. */
function cardTools(product) {
  const tools = document.createElement('span');
  tools.className = 'card-tools';
  const marked = (side) => query.kind === 'recommend' && query[side].some((p) => p.id === product.id);
  for (const [side, text] of [
    ['positive', 'More like this'],
    ['negative', 'Not like this'],
  ]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `quiet ${side === 'positive' ? 'more-like' : 'not-like'}`;
    b.setAttribute('aria-pressed', String(marked(side)));
    b.textContent = text;
    const name = document.createElement('span');
    name.className = 'visually-hidden';
    name.textContent = `: ${product.title}`;
    b.append(name);
    b.addEventListener('click', () => markExample(product, side));
    tools.append(b);
  }
  return tools;
}

/**
 * Marks a product as an example (clicking a marked one again unmarks it) and asks recommendProducts. A
 * "not like this" before any "more like this" keeps the best match shown as what the shopper likes.
 * @param {any} product
 * @param {'positive' | 'negative'} side
 */
function markExample(product, side) {
  const base = query.kind === 'recommend' ? query : { positive: [], negative: [] };
  const wasMarked = base[side].some((p) => p.id === product.id);
  const next = {
    kind: /** @type {const} */ ('recommend'),
    positive: base.positive.filter((p) => p.id !== product.id),
    negative: base.negative.filter((p) => p.id !== product.id),
  };
  if (!wasMarked) next[side] = [...next[side], product].slice(-MAX_EXAMPLES);
  if (next.positive.length === 0) {
    const best = shown.find((m) => !next.negative.some((n) => n.id === m.product.id));
    if (best) next.positive.push(best.product);
  }
  if (next.positive.length === 0) return;
  query = next;
  el.q.value = '';
  run().then(() => el.title.focus({ preventScroll: true }));
}

/** The refine box's words as composed-query terms: "in red, not leather" → red toward, leather away. */
function refineTerms(text) {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .slice(0, 7) // the photo is the 8th term
    .map((s) => {
      const away = /^(?:not|no|without)\s+(.+)$/i.exec(s);
      return away ? { text: away[1], weight: -0.4 } : { text: s, weight: 0.6 };
    });
}

/**
 * The catalog categories the shopper's photo most likely shows (classifyImage with the categories as
 * labels): one click narrows the filter to it, a second click widens it again.
 * @param {{ file: File, upload: Promise<Blob> }} photo the photo query it classifies
 */
async function showLikelyCategories(photo) {
  el.likely.hidden = true;
  el.likelyList.replaceChildren();
  const labels = [...el.category.options]
    .map((o) => o.value)
    .filter(Boolean)
    .slice(0, 64);
  if (labels.length < 2) return;
  try {
    const data = await gqlUpload(Q.classify, { image: { file: null }, labels }, { 'variables.image.file': await photo.upload });
    if (query.kind !== 'photo' || query.file !== photo.file) return; // another search meanwhile
    for (const l of data.classifyImage.labels.slice(0, 3)) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'quiet likely-category';
      b.dataset.category = l.label;
      b.textContent = l.probability == null ? l.label : `${l.label} · ${Math.round(l.probability * 100)} %`;
      b.title = l.probability == null ? 'Ranked by similarity (the model gives no probabilities)' : 'How likely the photo shows it';
      b.addEventListener('click', () => {
        el.category.value = el.category.value === l.label ? '' : l.label;
        markLikely();
        run();
      });
      li.append(b);
      el.likelyList.append(li);
    }
    markLikely();
    el.likely.hidden = false;
  } catch {
    // a hint, not the search: the page works without it
  }
}

function markLikely() {
  for (const b of el.likelyList.querySelectorAll('button'))
    b.setAttribute('aria-pressed', String(b.dataset.category === el.category.value));
}

// ---------- actions ----------

function showSimilar(product) {
  query = { kind: 'similar', product };
  clearPhoto();
  el.q.value = '';
  // The new heading takes focus (screen readers announce it) and comes into view (on a phone it is
  // below the search panel).
  const reduced = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  run().then(() => {
    el.title.focus({ preventScroll: true });
    const head = el.title.closest('.results-head');
    const top = head?.getBoundingClientRect().top ?? 0;
    if (top < 0 || top > window.innerHeight * 0.5) head?.scrollIntoView({ block: 'start', behavior: reduced ? 'auto' : 'smooth' });
  });
}

function clearPhoto() {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  el.preview.hidden = true;
  el.preview.removeAttribute('src');
  el.drop.classList.remove('has-photo');
  region = null;
  drawRegion();
  regionEl.editor.hidden = true;
  regionEl.photo.removeAttribute('src');
  el.refine.value = '';
  el.likely.hidden = true;
  el.likelyList.replaceChildren();
}

// ---- a region of the shopper's photo (issue 22): drawn with the pointer or moved with the keyboard,
// searched as a crop of the photo (similarProducts' region) when the pointer or the key is released.
/** @type {{ x: number, y: number, width: number, height: number } | null} */
let region = null;
const regionEl = {
  editor: $('region-editor'),
  canvas: $('region-canvas'),
  photo: /** @type {HTMLImageElement} */ ($('region-photo')),
  box: $('region-box'),
  draw: $('region-draw'),
  clear: $('region-clear'),
};
const clamp01 = (v) => Math.min(1, Math.max(0, v));
const round = (v) => Math.round(v * 1000) / 1000;

function drawRegion() {
  regionEl.box.hidden = region == null;
  regionEl.clear.hidden = region == null;
  if (!region) return;
  Object.assign(regionEl.box.style, {
    left: `${region.x * 100}%`,
    top: `${region.y * 100}%`,
    width: `${region.width * 100}%`,
    height: `${region.height * 100}%`,
  });
  const pct = (v) => `${Math.round(v * 100)} %`;
  regionEl.box.setAttribute(
    'aria-label',
    `Search area: from ${pct(region.x)} across and ${pct(region.y)} down, ${pct(region.width)} wide and ${pct(region.height)} high`,
  );
}

/** @param {{ x: number, y: number, width: number, height: number } | null} next */
function setRegion(next) {
  region = next && {
    x: round(clamp01(next.x)),
    y: round(clamp01(next.y)),
    width: round(Math.min(next.width, 1 - clamp01(next.x))),
    height: round(Math.min(next.height, 1 - clamp01(next.y))),
  };
  if (region && (region.width < 0.02 || region.height < 0.02)) region = null;
  drawRegion();
}

let regionSearch = null;
/** Re-searches once the shopper let go (keys: a moment after the last one, so a held key searches once). */
function searchRegionSoon(delay) {
  clearTimeout(regionSearch);
  regionSearch = setTimeout(() => {
    if (query.kind === 'photo') run();
  }, delay);
}

let dragFrom = null;
const pointAt = (e) => {
  const r = regionEl.canvas.getBoundingClientRect();
  return { x: clamp01((e.clientX - r.left) / r.width), y: clamp01((e.clientY - r.top) / r.height) };
};
regionEl.canvas.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  dragFrom = pointAt(e);
  regionEl.canvas.setPointerCapture(e.pointerId);
});
regionEl.canvas.addEventListener('pointermove', (e) => {
  if (!dragFrom) return;
  const at = pointAt(e);
  setRegion({
    x: Math.min(dragFrom.x, at.x),
    y: Math.min(dragFrom.y, at.y),
    width: Math.abs(at.x - dragFrom.x),
    height: Math.abs(at.y - dragFrom.y),
  });
});
regionEl.canvas.addEventListener('pointerup', () => {
  if (!dragFrom) return;
  dragFrom = null;
  if (region) regionEl.box.focus();
  searchRegionSoon(0);
});
regionEl.box.addEventListener('keydown', (e) => {
  if (!region) return;
  const step = 0.05;
  const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
  if (e.key === 'Delete' || e.key === 'Backspace' || e.key === 'Escape') {
    e.preventDefault();
    setRegion(null);
    regionEl.draw.focus();
    searchRegionSoon(0);
    return;
  }
  if (!d) return;
  e.preventDefault();
  const next = { ...region };
  if (e.shiftKey) {
    next.width = Math.max(0.05, Math.min(1 - next.x, next.width + d[0]));
    next.height = Math.max(0.05, Math.min(1 - next.y, next.height + d[1]));
  } else {
    next.x = Math.min(1 - next.width, Math.max(0, next.x + d[0]));
    next.y = Math.min(1 - next.height, Math.max(0, next.y + d[1]));
  }
  setRegion(next);
});
regionEl.box.addEventListener('keyup', (e) => {
  if (e.key.startsWith('Arrow')) searchRegionSoon(400);
});
// Keyboard users start with a centred area, then move and resize it.
regionEl.draw.addEventListener('click', () => {
  setRegion({ x: 0.25, y: 0.25, width: 0.5, height: 0.5 });
  regionEl.box.focus();
  searchRegionSoon(0);
});
regionEl.clear.addEventListener('click', () => {
  setRegion(null);
  regionEl.draw.focus();
  searchRegionSoon(0);
});

/** @param {File} file */
function searchPhoto(file) {
  clearPhoto();
  previewUrl = URL.createObjectURL(file);
  el.preview.src = previewUrl;
  el.preview.hidden = false;
  el.preview.alt = `Your photo: ${file.name}`;
  el.drop.classList.add('has-photo');
  regionEl.photo.src = previewUrl;
  regionEl.photo.alt = `Your photo, to draw a search area on: ${file.name}`;
  regionEl.editor.hidden = false;
  el.q.value = '';
  // uploaded as a file (multipart, no base64 overhead), made smaller first where it is larger than the model needs
  query = { kind: 'photo', file, upload: downsizeForUpload(file, modelImageSize) };
  showLikelyCategories(query);
  return run();
}

el.refineForm.addEventListener('submit', (e) => {
  e.preventDefault();
  if (query.kind !== 'photo') return;
  const refine = el.refine.value.trim();
  query = { kind: 'photo', file: query.file, upload: query.upload, ...(refine ? { refine } : {}) };
  run();
});

// A file the browser cannot show (not an image): no broken-image icon; the API's answer explains it.
for (const img of [el.preview, el.queryThumb]) {
  img.addEventListener('error', () => {
    img.hidden = true;
  });
}

el.photo.addEventListener('change', () => {
  const file = el.photo.files?.[0];
  if (file) searchPhoto(file);
  el.photo.value = ''; // choosing the same file again searches again
});

for (const type of ['dragenter', 'dragover']) {
  el.drop.addEventListener(type, (e) => {
    e.preventDefault();
    el.drop.classList.add('dragging');
  });
}
for (const type of ['dragleave', 'drop']) {
  el.drop.addEventListener(type, () => el.drop.classList.remove('dragging'));
}
el.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  const file = e.dataTransfer?.files?.[0];
  if (file) searchPhoto(file);
});
// A photo dropped anywhere else should not navigate away from the page.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());
document.addEventListener('paste', (e) => {
  const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) {
    e.preventDefault();
    searchPhoto(file);
  }
});

el.textForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = el.q.value.trim();
  clearPhoto();
  query = text ? { kind: 'text', text } : { kind: 'browse' };
  run();
});

// Filters apply at once: selects and the checkbox on change, prices when edited (debounced).
let priceTimer = 0;
el.filterForm.addEventListener('change', () => {
  markLikely();
  run();
});
el.filterForm.addEventListener('input', (e) => {
  if (e.target === el.minPrice || e.target === el.maxPrice) {
    clearTimeout(priceTimer);
    priceTimer = window.setTimeout(run, 500);
  }
});
el.filterForm.addEventListener('submit', (e) => {
  e.preventDefault();
  run();
});
$('reset-filters').addEventListener('click', () => {
  el.category.value = '';
  el.minPrice.value = '';
  el.maxPrice.value = '';
  el.inStock.checked = false;
  markLikely();
  run();
});
el.compareMode.addEventListener('change', () => {
  history.replaceState(null, '', el.compareMode.checked ? '#compare' : location.pathname + location.search);
  run();
});
el.clear.addEventListener('click', () => {
  clearPhoto();
  el.q.value = '';
  query = { kind: 'browse' };
  run();
});

// Browsing: the next page of the catalog, appended.
el.more.addEventListener('click', async () => {
  if (query.kind !== 'browse' || nextCursor == null) return;
  const mine = seq; // a new query meanwhile makes this page stale
  el.more.disabled = true;
  el.more.textContent = 'Loading…';
  try {
    const data = await gql(Q.browse, { filter: currentFilter(), first: Math.min(currentK(), 500), after: nextCursor });
    if (mine !== seq) return;
    const firstNew = el.grid.children.length;
    el.grid.append(...data.products.edges.map((e) => card({ product: e.node, score: null })));
    nextCursor = data.products.pageInfo.hasNextPage ? data.products.pageInfo.endCursor : null;
    const shown = el.grid.children.length;
    const total = data.products.totalCount;
    el.status.textContent = `${shown < total ? `${shown} of ${total}` : shown} ${total === 1 ? 'product' : 'products'}`;
    el.more.hidden = nextCursor == null;
    // keyboard users continue where the new cards start
    el.grid.children[firstNew]?.querySelector('button')?.focus();
  } catch (err) {
    if (mine === seq) showError(err instanceof ApiError ? describeError(err) : describeError(new ApiError('NETWORK', String(err))));
  } finally {
    el.more.disabled = false;
    el.more.textContent = 'Show more';
  }
});

// ---------- start ----------

async function loadModel() {
  try {
    const { embeddingModel: m } = await gql(Q.model);
    if (!m) {
      el.model.dataset.state = 'none';
      el.model.textContent = 'Model: none loaded';
      el.notice.hidden = false;
      el.notice.textContent =
        'The service runs without an embedding model: you can browse the catalog, but search by photo or text is unavailable.';
      return;
    }
    if (m.imageSize > 0) modelImageSize = m.imageSize;
    const standIn = /^vps\/tiny-/.test(m.id); // the project's generated stand-in models
    el.model.dataset.state = standIn ? 'stand-in' : 'real';
    el.model.textContent = `Model: ${m.id} · ${m.provider}${standIn ? ' (stand-in)' : ''}`;
    el.model.title = `${m.dimension}-dimensional embeddings${m.active ? '' : ' (not the active model)'}`;
    if (standIn) {
      el.notice.hidden = false;
      el.notice.textContent =
        'Running on the tiny stand-in model (no SigLIP 2 model in the cache): photo search matches colours and shapes; text search is not meaningful.';
    }
  } catch {
    el.model.dataset.state = 'none';
    el.model.textContent = 'Model: unknown';
  }
}

async function loadCategories() {
  try {
    // There is no categories query: read them off the catalog, a page at a time (at most 10 pages).
    const seen = new Set();
    let after = null;
    for (let page = 0; page < 10; page++) {
      const data = await gql(Q.categories, { after });
      for (const e of data.products.edges) seen.add(e.node.category);
      if (!data.products.pageInfo.hasNextPage) break;
      after = data.products.pageInfo.endCursor;
    }
    const names = [...seen].sort((a, b) => a.localeCompare(b));
    for (const name of names) el.category.append(new Option(name, name));
  } catch {
    // the page still works without the list
  }
}

if (window.matchMedia('(min-width: 900px)').matches) el.filters.open = true;
if (location.hash === '#compare') el.compareMode.checked = true; // a link straight to the compare view
loadModel();
loadCategories();
run();
