// Order-book depth chart (marketplace/market_depth.html): cumulative bids and asks of one model by price.
// Data: <script type="application/json" id="depth-data"> ({bids: [[price, n]...], asks: [...]});
// labels: data-label-bids, data-label-asks, data-axis-x, data-axis-y on #depth-chart.
(function () {
  "use strict";
  var box = document.getElementById("depth-chart");
  var source = document.getElementById("depth-data");
  if (!box || !source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var label = box.dataset;
  var chart = window.echarts.init(box, null, { renderer: "svg" });
  chart.setOption({
    color: ["#198754", "#dc3545"],
    tooltip: window.SuanliCharts.tooltip({ trigger: "axis" }),
    legend: { top: 0, data: [label.labelBids, label.labelAsks] },
    grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "value", name: label.axisX, nameLocation: "middle", nameGap: 28, scale: true },
    yAxis: { type: "value", name: label.axisY },
    series: [
      { name: label.labelBids, type: "line", step: "start", areaStyle: { opacity: 0.15 }, symbolSize: 5, data: data.bids },
      { name: label.labelAsks, type: "line", step: "end", areaStyle: { opacity: 0.15 }, symbolSize: 5, data: data.asks }
    ]
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
