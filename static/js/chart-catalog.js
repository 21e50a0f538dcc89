// Side-by-side chart of the accelerator catalog (marketplace/catalog.html): SCU and BWU per accelerator-hour.
// Data: <script type="application/json" id="compare-data"> ({labels, scu, bwu});
// labels: data-label-scu, data-label-bwu, data-axis-y on #compare-chart.
(function () {
  "use strict";
  var box = document.getElementById("compare-chart");
  var source = document.getElementById("compare-data");
  if (!box || !source || !window.echarts || !window.SuanliCharts) { return; }
  var data = JSON.parse(source.textContent);
  var label = box.dataset;
  var chart = window.echarts.init(box, null, { renderer: "svg" });
  var narrow = box.clientWidth < 500;
  var unknown = function (p) { return p.value == null ? "?" : p.value; };
  chart.setOption({
    color: ["#0d6efd", "#20c997"],
    tooltip: window.SuanliCharts.tooltip({ trigger: "axis", axisPointer: { type: "shadow" } }),
    legend: { top: 0, data: [label.labelScu, label.labelBwu] },
    grid: { left: 8, right: 8, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: data.labels, axisLabel: { interval: 0, width: narrow ? 70 : 140, overflow: "break" } },
    yAxis: { type: "value", name: label.axisY },
    series: [
      { name: label.labelScu, type: "bar", data: data.scu, label: { show: true, position: "top", formatter: unknown } },
      { name: label.labelBwu, type: "bar", data: data.bwu, label: { show: true, position: "top", formatter: unknown } }
    ]
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
